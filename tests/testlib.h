/* testlib.h — what every C test includes: cmocka, and helpers to load the bundled policy.
 * Tests run from the repository root (tests/run.sh), so paths are relative to it. */
#ifndef CREDITGATE_TESTLIB_H
#define CREDITGATE_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_TEST_POLICY "policy/carat.yaml"

/* Fails the test with the message when rc is not CG_OK. */
#define assert_cg_ok(rc, err)                                                        \
    do {                                                                              \
        int rc_ = (rc);                                                               \
        if (rc_ != 0) fail_msg("expected ok, got %d: %s", rc_, (err).msg);           \
    } while (0)

#endif
