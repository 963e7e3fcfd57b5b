/* time.h — instants and calendar dates, explicit about which is which.
 *
 * An instant is int64_t microseconds since the Unix epoch (`_at_us`). A calendar date is a
 * cg_date: days since 1970-01-01 in the policy's time zone (Asia/Seoul for the bundled
 * policy, a fixed UTC offset with no DST). Nothing here allocates. */
#ifndef CREDITGATE_TIME_H
#define CREDITGATE_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "creditgate/err.h"

typedef int32_t cg_date;

#define CG_DATE_MIN INT32_MIN /* "no lower bound" */
#define CG_DATE_MAX INT32_MAX /* "no upper bound" */
#define CG_US_PER_S INT64_C(1000000)
#define CG_US_PER_DAY (INT64_C(86400) * CG_US_PER_S)
#define CG_DATE_TEXT_BYTES 11 /* "YYYY-MM-DD" + NUL */
#define CG_RFC3339_TEXT_BYTES 40
#define CG_YEAR_MIN 1900
#define CG_YEAR_MAX 9999

/* Builds a date from a civil year/month/day; fails on impossible dates (2026-02-29). */
int cg_date_from_ymd(int year, int month, int day, cg_date *out, cg_err *err);
void cg_date_to_ymd(cg_date date, int *year, int *month, int *day);
/* Adds a calendar duration. A day that does not exist in the target month is clamped to the
 * month's last day (2028-02-29 + 1 year = 2029-02-28), as PostgreSQL and java.time do. */
cg_date cg_date_add(cg_date date, int years, int months, int days);

/* Parses "YYYY-MM-DD" (strict). */
int cg_date_parse(const char *text, cg_date *out, cg_err *err);
/* Parses "YYYY-MM-DD" (midnight at utc_offset_s) or RFC 3339 "YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM)". */
int cg_time_parse(const char *text, int32_t utc_offset_s, int64_t *at_us, cg_err *err);
/* A date, or an RFC 3339 instant converted to its calendar date at utc_offset_s. */
int cg_date_parse_or_instant(const char *text, int32_t utc_offset_s, cg_date *out, cg_err *err);

cg_date cg_time_to_date(int64_t at_us, int32_t utc_offset_s);
int64_t cg_date_start_us(cg_date date, int32_t utc_offset_s);

/* Writes "YYYY-MM-DD"; buf must hold CG_DATE_TEXT_BYTES. */
void cg_date_format(cg_date date, char *buf, size_t buf_bytes);
/* Writes "YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM" at utc_offset_s. */
void cg_time_format(int64_t at_us, int32_t utc_offset_s, char *buf, size_t buf_bytes);
/* Parses "+09:00", "-05:30" or "Z" into seconds east of UTC. */
int cg_utc_offset_parse(const char *text, int32_t *offset_s, cg_err *err);

int64_t cg_time_now_us(void);

#endif
