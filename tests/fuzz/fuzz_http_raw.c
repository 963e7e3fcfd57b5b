/* fuzz_http_raw.c — libFuzzer target: the input is a whole HTTP request (request line,
 * headers, body) sent on a fresh loopback connection to an in-process server (fuzz_http.h).
 * The server may refuse or drop it however libmicrohttpd likes (4xx, 501, 505, no answer),
 * but it must never answer 500 and must stay up for the next input. */
#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fh_init();
    if (size > 32 * 1024) return 0;
    int fd = fh_connect();
    struct timeval tv = {2, 0}; /* a request it is still waiting to complete ends here */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static char answer[1 << 20];
    char *reply = NULL;
    int close_after = 0;
    int status = -1;
    if (!fh_send(fd, (const char *)data, size)) {
        shutdown(fd, SHUT_WR);
        status = fh_read(fd, answer, sizeof answer, &reply, &close_after);
    }
    close(fd);
    if (status == 500) {
        fprintf(stderr, "fuzz_http_raw: answered 500: %s\n", reply ? reply : "");
        abort();
    }
    /* still serving: a health check on the kept connection must answer 200 */
    if (fh_request("GET", "/healthz", fh_service, "", 0) != 200) abort();
    return 0;
}
