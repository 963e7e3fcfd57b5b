/* replay.h — runs every seed (tests/fuzz/corpus/TARGET/) and every crasher found by the
 * fuzzers (tests/fuzz/crashers/TARGET/) through a fuzz target's entry point, so a fixed crash
 * stays fixed. Shared by the replay tests; include after testlib.h. */
#ifndef CREDITGATE_TEST_FUZZ_REPLAY_H
#define CREDITGATE_TEST_FUZZ_REPLAY_H

#include <dirent.h>
#include <stdint.h>

#define REPLAY_INPUT_BYTES_MAX (1 << 17)

typedef int (*fuzz_fn)(const uint8_t *, size_t);

static inline int replay_dir(const char *dir, fuzz_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int files = 0;
    struct dirent *e;
    static uint8_t buf[REPLAY_INPUT_BYTES_MAX];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        fn(buf, n);
        files++;
    }
    closedir(d);
    return files;
}

/* Replays TARGET's seeds and crashers; a target without seeds fails the test. */
static inline void replay(const char *target, fuzz_fn fn) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", target);
    int seeds = replay_dir(dir, fn);
    snprintf(dir, sizeof dir, "tests/fuzz/crashers/%s", target);
    int crashers = replay_dir(dir, fn);
    if (seeds == 0) fail_msg("no seed corpus for %s", target);
    printf("  %s: %d seeds, %d crashers replayed\n", target, seeds, crashers);
}

#endif
