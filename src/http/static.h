/* static.h — the web pages of `creditgate serve`: My Credits at /, the support console at
 * /support, their assets under /web/ and the public price list /web/catalog.json. server.c
 * hands a request here before its API route table; static.c answers it completely. */
#ifndef CREDITGATE_HTTP_STATIC_H
#define CREDITGATE_HTTP_STATIC_H

#include <microhttpd.h>
#include <stdbool.h>

#include "internal.h"

#define WEB_ROOT "web"                     /* relative to the working directory, like docs/ */
#define WEB_FILE_BYTES_MAX (512 * 1024)    /* largest asset served */
#define WEB_NAME_BYTES_MAX 64              /* one path segment under /web/ */

/* True for the paths the pages own: "/", "/support" and "/web/..." (any method, so a POST
 * there is answered 405 here rather than 404 by the API router). */
bool web_static_match(const char *url);

/* Answers the request: queues the response (file, 304, 404 or 405), sets r->status,
 * r->route = -1 and r->answered. Never reads a file outside WEB_ROOT. */
enum MHD_Result web_static_serve(req *r, const char *method, const char *url);

/* "ko" or "en": the better of the two by the q-values of an Accept-Language header
 * (NULL or neither language named: "en"). */
const char *web_lang_pick(const char *accept_language);

#endif
