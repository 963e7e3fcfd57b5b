/* test_time.c — calendar dates and instants: strict parsing, leap years, the policy offset,
 * and the clamped anniversary used by "1 year" benefits. */
#include "testlib.h"

#include <time.h>
#include "creditgate/time.h"

#define SEOUL (9 * 3600)

static cg_date date(const char *text) {
    cg_date d = 0;
    cg_err err;
    if (cg_date_parse(text, &d, &err)) fail_msg("%s: %s", text, err.msg);
    return d;
}

static void test_dates_parse_and_format_round_trip(void **s) {
    (void)s;
    const char *texts[] = {"1970-01-01", "2024-02-29", "2025-11-21", "2026-05-22", "2099-12-31", "1900-03-01"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char out[CG_DATE_TEXT_BYTES];
        cg_date_format(date(texts[i]), out, sizeof out);
        assert_string_equal(out, texts[i]);
    }
    assert_int_equal(date("1970-01-01"), 0);
    assert_int_equal(date("1970-01-02"), 1);
    assert_int_equal(date("1969-12-31"), -1);
}

static void test_impossible_dates_are_refused(void **s) {
    (void)s;
    const char *bad[] = {"2026-02-29", "2026-02-30", "2026-13-01", "2026-00-10", "2026-04-31", "2026-1-01",
                         "26-01-01", "2026/01/01", "", "2026-01-01x", "1899-12-31"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cg_date d;
        cg_err err = {0};
        if (cg_date_parse(bad[i], &d, &err) == CG_OK) fail_msg("'%s' was accepted", bad[i]);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_anniversary_clamps_feb_29(void **s) {
    (void)s;
    assert_int_equal(cg_date_add(date("2026-03-01"), 1, 0, 0), date("2027-03-01"));
    assert_int_equal(cg_date_add(date("2028-02-29"), 1, 0, 0), date("2029-02-28"));
    assert_int_equal(cg_date_add(date("2028-02-29"), 4, 0, 0), date("2032-02-29"));
    assert_int_equal(cg_date_add(date("2026-01-31"), 0, 1, 0), date("2026-02-28"));
    assert_int_equal(cg_date_add(date("2026-12-31"), 0, 0, 1), date("2027-01-01"));
}

static void test_instants_with_offsets(void **s) {
    (void)s;
    int64_t a, b;
    cg_err err;
    assert_cg_ok(cg_time_parse("2025-11-20T15:00:00Z", SEOUL, &a, &err), err);
    assert_cg_ok(cg_time_parse("2025-11-21T00:00:00+09:00", SEOUL, &b, &err), err);
    assert_int_equal(a, b);
    assert_cg_ok(cg_time_parse("2025-11-21", SEOUL, &b, &err), err); /* a bare date is midnight in the zone */
    assert_int_equal(a, b);
    assert_int_equal(cg_time_to_date(a, SEOUL), date("2025-11-21"));
    assert_int_equal(cg_time_to_date(a - 1, SEOUL), date("2025-11-20"));
    assert_cg_ok(cg_time_parse("2025-11-21T00:00:00.5-05:00", SEOUL, &b, &err), err);
    assert_int_equal(b - a, (int64_t)14 * 3600 * CG_US_PER_S + 500000);
    char text[CG_RFC3339_TEXT_BYTES];
    cg_time_format(a, SEOUL, text, sizeof text);
    assert_string_equal(text, "2025-11-21T00:00:00+09:00");
    cg_time_format(b, 0, text, sizeof text);
    assert_string_equal(text, "2025-11-21T05:00:00.500000+00:00");
    cg_time_format(-1, 0, text, sizeof text);
    assert_string_equal(text, "1969-12-31T23:59:59.999999+00:00");
}

static void test_bad_instants_are_refused(void **s) {
    (void)s;
    const char *bad[] = {"2025-11-21T25:00:00Z", "2025-11-21T10:00:00", "2025-11-21T10:00Z", "2025-11-21T10:00:00+9",
                         "2025-11-21T10:00:00+09:00junk", "2025-11-21T10:00:00.Z", "now"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t at;
        cg_err err = {0};
        if (cg_time_parse(bad[i], SEOUL, &at, &err) == CG_OK) fail_msg("'%s' was accepted", bad[i]);
    }
}

static void test_utc_offsets(void **s) {
    (void)s;
    int32_t off;
    cg_err err;
    assert_cg_ok(cg_utc_offset_parse("+09:00", &off, &err), err);
    assert_int_equal(off, SEOUL);
    assert_cg_ok(cg_utc_offset_parse("-05:30", &off, &err), err);
    assert_int_equal(off, -(5 * 3600 + 30 * 60));
    assert_cg_ok(cg_utc_offset_parse("Z", &off, &err), err);
    assert_int_equal(off, 0);
    assert_int_equal(cg_utc_offset_parse("+24:00", &off, &err), CG_EINVAL);
    assert_int_equal(cg_utc_offset_parse("0900", &off, &err), CG_EINVAL);
}

/* The hand-written formatter against snprintf's text, over instants from year 0 to 9999
 * (and beyond, where it falls back), whole and fractional seconds, offsets either side. */
static void test_format_matches_printf(void **state) {
    (void)state;
    uint64_t x = 88172645463325252u;
    const int32_t offsets[] = {0, 9 * 3600, -5 * 3600 - 1800, 14 * 3600, -12 * 3600, 345 * 60};
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* ±12,000 years around 1970 in µs, every fourth a whole second */
        int64_t at = (int64_t)(x % (2 * INT64_C(378691200000000000))) - INT64_C(378691200000000000);
        if (i % 4 == 0) at -= at % CG_US_PER_S;
        int32_t off = offsets[i % 6];
        char got[64], want[128];
        cg_time_format(at, off, got, sizeof got);
        int64_t local = at + (int64_t)off * CG_US_PER_S;
        int64_t day = local >= 0 ? local / CG_US_PER_DAY : -((-local + CG_US_PER_DAY - 1) / CG_US_PER_DAY);
        int64_t us = local - day * CG_US_PER_DAY, sec = us / CG_US_PER_S, frac = us % CG_US_PER_S;
        char date[32], frac_text[16] = "";
        time_t day_s = (time_t)day * 86400; /* the calendar from libc, not from us */
        struct tm tm;
        assert_non_null(gmtime_r(&day_s, &tm));
        snprintf(date, sizeof date, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday);
        if (frac) snprintf(frac_text, sizeof frac_text, ".%06lld", (long long)frac);
        int32_t a = off < 0 ? -off : off;
        snprintf(want, sizeof want, "%sT%02d:%02d:%02d%s%c%02d:%02d", date, (int)(sec / 3600),
                 (int)(sec / 60 % 60), (int)(sec % 60), frac_text, off < 0 ? '-' : '+',
                 (int)(a / 3600), (int)(a / 60 % 60));
        assert_string_equal(got, want);
    }
    char small[8]; /* a short buffer is truncated like snprintf, never overrun */
    cg_time_format(0, 0, small, sizeof small);
    assert_string_equal(small, "1970-01");
    cg_date_format(0, small, 5);
    assert_string_equal(small, "1970");
    char date[16];
    cg_date_format(-719528, date, sizeof date); /* 0000-01-01 */
    assert_string_equal(date, "0000-01-01");
    cg_date_format(2932896, date, sizeof date); /* 9999-12-31 */
    assert_string_equal(date, "9999-12-31");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_matches_printf),
        cmocka_unit_test(test_dates_parse_and_format_round_trip),
        cmocka_unit_test(test_impossible_dates_are_refused),
        cmocka_unit_test(test_anniversary_clamps_feb_29),
        cmocka_unit_test(test_instants_with_offsets),
        cmocka_unit_test(test_bad_instants_are_refused),
        cmocka_unit_test(test_utc_offsets),
    };
    return cmocka_run_group_tests_name("time", tests, NULL, NULL);
}
