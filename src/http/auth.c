/* auth.c — who is calling: service keys (read as SHA-256 hashes from a file, compared in
 * constant time) and member tokens (HMAC-SHA-256 signed by this server, short-lived).
 * No key or token text is ever logged or kept beyond the call; see docs/http.md "Security". */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define KEY_PREFIX "cgk_"
#define TOKEN_PREFIX "cgm1."
#define KEY_RANDOM_BYTES 24

const char *role_name(role r) {
    switch (r) {
    case ROLE_MEMBER: return "member";
    case ROLE_SERVICE: return "service";
    case ROLE_ADMIN: return "admin";
    default: return "none";
    }
}

static int role_parse(const char *text, role *out) {
    if (!strcmp(text, "service")) *out = ROLE_SERVICE;
    else if (!strcmp(text, "admin")) *out = ROLE_ADMIN;
    else return -1;
    return 0;
}

/* One line: NAME ROLE HEX64. Blank lines and '#' comments are skipped. */
static int key_line(keyring *ring, char *line, const char *path, int line_no, cg_err *err) {
    char *save = NULL;
    char *name = strtok_r(line, " \t\r\n", &save);
    if (!name || name[0] == '#') return CG_OK;
    char *role_text = strtok_r(NULL, " \t\r\n", &save);
    char *hex = strtok_r(NULL, " \t\r\n", &save);
    if (!role_text || !hex || strtok_r(NULL, " \t\r\n", &save))
        return cg_err_set(err, CG_EPARSE, "%s:%d: want 'NAME ROLE SHA256HEX'", path, line_no);
    if (ring->count >= CG_HTTP_KEYS_MAX)
        return cg_err_set(err, CG_ELIMIT, "%s:%d: more than %d keys", path, line_no,
                          CG_HTTP_KEYS_MAX);
    key_entry *k = &ring->keys[ring->count];
    if (strlen(name) >= sizeof k->name)
        return cg_err_set(err, CG_EPARSE, "%s:%d: key name too long", path, line_no);
    if (role_parse(role_text, &k->role))
        return cg_err_set(err, CG_EPARSE, "%s:%d: role '%s' is not service or admin", path,
                          line_no, role_text);
    size_t bin_len = 0;
    if (strlen(hex) != 64 ||
        sodium_hex2bin(k->hash, sizeof k->hash, hex, 64, NULL, &bin_len, NULL) || bin_len != 32)
        return cg_err_set(err, CG_EPARSE, "%s:%d: hash must be 64 hex digits (SHA-256)", path,
                          line_no);
    snprintf(k->name, sizeof k->name, "%s", name);
    ring->count++;
    return CG_OK;
}

static int keys_read(keyring *ring, const char *path, cg_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return cg_err_set(err, CG_EIO, "%s: %s", path, strerror(errno));
    char line[CG_HTTP_CONFIG_LINE_BYTES_MAX];
    int rc = CG_OK, line_no = 0;
    while (!rc && fgets(line, sizeof line, f)) rc = key_line(ring, line, path, ++line_no, err);
    fclose(f);
    return rc;
}

static int secret_read(keyring *ring, const char *path, cg_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cg_err_set(err, CG_EIO, "%s: %s", path, strerror(errno));
    unsigned char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < CG_HTTP_TOKEN_SECRET_BYTES)
        return cg_err_set(err, CG_EINVAL, "%s: token secret needs at least %d bytes", path,
                          CG_HTTP_TOKEN_SECRET_BYTES);
    /* Hash whatever the operator wrote (hex, base64, raw) down to the HMAC key size. */
    crypto_generichash(ring->token_secret, sizeof ring->token_secret, buf, (size_t)n, NULL, 0);
    sodium_memzero(buf, sizeof buf);
    return CG_OK;
}

int keyring_load(keyring *ring, const char *keys_path, const char *secret_path, cg_err *err) {
    assert(ring && keys_path && secret_path);
    if (sodium_init() < 0) return cg_err_set(err, CG_EIO, "libsodium failed to initialise");
    memset(ring, 0, sizeof *ring);
    int rc;
    if (*keys_path && (rc = keys_read(ring, keys_path, err))) return rc;
    if (*secret_path) return secret_read(ring, secret_path, err);
    randombytes_buf(ring->token_secret, sizeof ring->token_secret);
    return CG_OK;
}

/* Every entry is compared, match or not, so timing does not tell which key is close. */
static int key_check(const keyring *ring, const char *key, principal *out) {
    unsigned char hash[32];
    crypto_hash_sha256(hash, (const unsigned char *)key, strlen(key));
    int found = -1;
    for (int i = 0; i < ring->count; i++) {
        int same = sodium_memcmp(hash, ring->keys[i].hash, sizeof hash) == 0;
        found = same && found < 0 ? i : found;
    }
    if (found < 0) return -1;
    out->role = ring->keys[found].role;
    out->expires_at_us = INT64_MAX; /* until the keys file changes (snapshot generation) */
    snprintf(out->name, sizeof out->name, "%s", ring->keys[found].name);
    return 0;
}

/* Token: "cgm1." b64url(member_id "|" expires_at_us) "." b64url(HMAC-SHA-256 of the part
 * before the second dot). */
int token_mint(const keyring *ring, const char *member_id, int64_t expires_at_us, char *buf,
               size_t buf_bytes) {
    char payload[CG_HTTP_ID_BYTES_MAX + 32];
    int n = snprintf(payload, sizeof payload, "%s|%" PRId64, member_id, expires_at_us);
    assert(n > 0 && (size_t)n < sizeof payload);
    char signed_part[CG_HTTP_TOKEN_BYTES_MAX];
    size_t pre = strlen(TOKEN_PREFIX);
    memcpy(signed_part, TOKEN_PREFIX, pre);
    sodium_bin2base64(signed_part + pre, sizeof signed_part - pre, (unsigned char *)payload,
                      (size_t)n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (unsigned char *)signed_part, strlen(signed_part),
                           ring->token_secret);
    char mac_text[64];
    sodium_bin2base64(mac_text, sizeof mac_text, mac, sizeof mac,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int total = snprintf(buf, buf_bytes, "%s.%s", signed_part, mac_text);
    return total > 0 && (size_t)total < buf_bytes ? CG_OK : CG_ELIMIT;
}

static int token_check(const keyring *ring, const char *token, int64_t now_us, principal *out) {
    const char *dot = strrchr(token, '.');
    size_t pre = strlen(TOKEN_PREFIX);
    if (!dot || (size_t)(dot - token) <= pre || strlen(token) >= CG_HTTP_TOKEN_BYTES_MAX)
        return -1;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t mac_len = 0;
    if (sodium_base642bin(mac, sizeof mac, dot + 1, strlen(dot + 1), NULL, &mac_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) ||
        mac_len != sizeof mac)
        return -1;
    if (crypto_auth_hmacsha256_verify(mac, (const unsigned char *)token, (size_t)(dot - token),
                                      ring->token_secret))
        return -1;
    char payload[CG_HTTP_ID_BYTES_MAX + 32];
    size_t len = 0;
    if (sodium_base642bin((unsigned char *)payload, sizeof payload - 1, token + pre,
                          (size_t)(dot - token) - pre, NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return -1;
    payload[len] = '\0';
    char *bar = strrchr(payload, '|');
    if (!bar || bar == payload || (size_t)(bar - payload) >= sizeof out->member_id) return -1;
    int64_t expires_at_us = strtoll(bar + 1, NULL, 10);
    if (now_us >= expires_at_us) return -2;
    *bar = '\0';
    out->role = ROLE_MEMBER;
    out->expires_at_us = expires_at_us;
    memcpy(out->member_id, payload, (size_t)(bar - payload) + 1); /* length checked above */
    snprintf(out->name, sizeof out->name, "member-token");
    return 0;
}

int keyring_authenticate(const keyring *ring, const char *authorization, int64_t now_us,
                         principal *out, cg_err *err) {
    assert(ring && out);
    memset(out, 0, sizeof *out);
    if (!authorization) return cg_err_set(err, CG_EINVAL, "missing Authorization: Bearer");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return cg_err_set(err, CG_EINVAL, "Authorization must be 'Bearer <key or token>'");
    const char *cred = authorization + 7;
    while (*cred == ' ') cred++;
    if (!strncmp(cred, TOKEN_PREFIX, strlen(TOKEN_PREFIX))) {
        int rc = token_check(ring, cred, now_us, out);
        if (rc == -2) return cg_err_set(err, CG_EINVAL, "member token expired");
        if (rc) return cg_err_set(err, CG_EINVAL, "invalid member token");
        return CG_OK;
    }
    if (key_check(ring, cred, out)) return cg_err_set(err, CG_EINVAL, "unknown key");
    return CG_OK;
}

int cg_http_key_generate(const char *name, const char *role_text, char *key, size_t key_bytes,
                         char *line, size_t line_bytes, cg_err *err) {
    role r;
    if (!name || !*name || strlen(name) >= CG_HTTP_KEY_NAME_BYTES_MAX || strchr(name, ' '))
        return cg_err_set_field(err, CG_EINVAL, "name", "key name must be one short word");
    if (!role_text || role_parse(role_text, &r))
        return cg_err_set_field(err, CG_EINVAL, "role", "role must be service or admin");
    if (sodium_init() < 0) return cg_err_set(err, CG_EIO, "libsodium failed to initialise");
    unsigned char raw[KEY_RANDOM_BYTES];
    randombytes_buf(raw, sizeof raw);
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int n = snprintf(key, key_bytes, KEY_PREFIX "%s", b64);
    if (n < 0 || (size_t)n >= key_bytes) return cg_err_set(err, CG_ELIMIT, "key buffer small");
    unsigned char hash[32];
    crypto_hash_sha256(hash, (const unsigned char *)key, strlen(key));
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    n = snprintf(line, line_bytes, "%s %s %s", name, role_text, hex);
    if (n < 0 || (size_t)n >= line_bytes) return cg_err_set(err, CG_ELIMIT, "line buffer small");
    return CG_OK;
}
