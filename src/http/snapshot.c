/* snapshot.c — one loaded policy set, its compiled engine and the service keys, shared by
 * reference count.
 * A request takes a reference for its whole life, so a reload that swaps in a new snapshot
 * never frees the rules a request is still deciding with (server.c does the swapping). */
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static void stamp_take(const char *path, file_stamp *out) {
    struct stat st;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) != 0) return;
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

static int load_set(const cg_http_config *config, snapshot *snap, cg_err *err) {
    for (int i = 0; i < config->policy_path_count; i++) {
        /* Stamp before reading: a write racing the read shows up as a change next check. */
        stamp_take(config->policy_paths[i], &snap->stamps[i]);
        cg_policy *policy = NULL;
        int rc = cg_policy_load_file(config->policy_paths[i], &policy, err);
        if (rc) return rc;
        if ((rc = cg_policy_set_add_take(&snap->set, policy, err))) return rc;
    }
    return CG_OK;
}

int snapshot_load(const cg_http_config *config, const snapshot *prev, snapshot **out,
                  cg_err *err) {
    assert(config && out);
    if (config->policy_path_count < 1) return cg_err_set(err, CG_EINVAL, "no policy file given");
    snapshot *snap = calloc(1, sizeof *snap);
    if (!snap) return cg_err_set(err, CG_ENOMEM, "out of memory loading the policy");
    cg_policy_set_init(&snap->set);
    int rc = keyring_load(&snap->keys, config->keys_path, config->token_secret_path, err);
    if (!rc && prev && !config->token_secret_path[0])
        memcpy(snap->keys.token_secret, prev->keys.token_secret, sizeof snap->keys.token_secret);
    if (!rc) rc = load_set(config, snap, err);
    if (!rc) rc = cg_engine_init(&snap->engine, &snap->set, err);
    if (rc) {
        cg_policy_set_free(&snap->set);
        sodium_memzero(&snap->keys, sizeof snap->keys);
        free(snap);
        return rc;
    }
    assert(snap->set.count >= 1);
    snap->utc_offset_s = snap->set.versions[snap->set.count - 1]->utc_offset_s;
    size_t used = 0;
    for (int i = 0; i < snap->set.count && used < sizeof snap->label; i++) {
        int n = snprintf(snap->label + used, sizeof snap->label - used, "%s%s", i ? "," : "",
                         snap->set.versions[i]->version);
        if (n < 0) break;
        used += (size_t)n;
    }
    /* random rather than counted, so no counter outlives a server; 0 means "none" in caches */
    do randombytes_buf(&snap->generation, sizeof snap->generation);
    while (snap->generation == 0);
    atomic_init(&snap->refs, 1);
    *out = snap;
    return CG_OK;
}

void snapshot_release(snapshot *snap) {
    if (!snap) return;
    int before = atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel);
    assert(before >= 1);
    if (before != 1) return;
    cg_engine_free(&snap->engine);
    cg_policy_set_free(&snap->set);
    sodium_memzero(&snap->keys, sizeof snap->keys);
    free(snap);
}

bool stamps_changed(const cg_http_config *config, const file_stamp *seen) {
    for (int i = 0; i < config->policy_path_count; i++) {
        file_stamp now;
        stamp_take(config->policy_paths[i], &now);
        const file_stamp *was = &seen[i];
        if (now.dev != was->dev || now.ino != was->ino || now.size != was->size ||
            now.mtime_ns != was->mtime_ns)
            return true;
    }
    return false;
}

void stamps_take(const cg_http_config *config, file_stamp *out) {
    for (int i = 0; i < config->policy_path_count; i++) stamp_take(config->policy_paths[i], &out[i]);
}
