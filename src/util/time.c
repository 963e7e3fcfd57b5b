/* time.c — civil-date arithmetic and RFC 3339 parsing/formatting for creditgate.
 *
 * Dates use Howard Hinnant's days_from_civil algorithm (proleptic Gregorian, no tables).
 * Parsing is strict: every field has a fixed width and a range; anything else is an error
 * naming the text. No allocation, no locale, no libc time zone state. */
#include "creditgate/time.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned dd = doy - (153 * mp + 2) / 5 + 1;
    const unsigned mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (mm <= 2));
    *m = (int)mm;
    *d = (int)dd;
}

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int y, int m) {
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    assert(m >= 1 && m <= 12);
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

int cg_date_from_ymd(int year, int month, int day, cg_date *out, cg_err *err) {
    if (year < CG_YEAR_MIN || year > CG_YEAR_MAX)
        return cg_err_set(err, CG_EINVAL, "year %d is out of range %d..%d", year, CG_YEAR_MIN,
                          CG_YEAR_MAX);
    if (month < 1 || month > 12)
        return cg_err_set(err, CG_EINVAL, "month %d is out of range 1..12", month);
    if (day < 1 || day > days_in_month(year, month))
        return cg_err_set(err, CG_EINVAL, "%04d-%02d has no day %d", year, month, day);
    *out = (cg_date)days_from_civil(year, (unsigned)month, (unsigned)day);
    return CG_OK;
}

void cg_date_to_ymd(cg_date date, int *year, int *month, int *day) {
    civil_from_days(date, year, month, day);
}

cg_date cg_date_add(cg_date date, int years, int months, int days) {
    int y, m, d;
    civil_from_days(date, &y, &m, &d);
    int64_t month_index = (int64_t)y * 12 + (m - 1) + (int64_t)years * 12 + months;
    y = (int)(month_index / 12);
    m = (int)(month_index % 12) + 1;
    int dim = days_in_month(y, m);
    if (d > dim) d = dim;
    return (cg_date)(days_from_civil(y, (unsigned)m, (unsigned)d) + days);
}

/* Reads exactly `width` decimal digits at text[*pos]. */
static bool read_digits(const char *text, size_t *pos, int width, int *out) {
    int v = 0;
    for (int i = 0; i < width; i++) {
        char c = text[*pos + (size_t)i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *pos += (size_t)width;
    *out = v;
    return true;
}

static bool read_char(const char *text, size_t *pos, char want) {
    if (text[*pos] != want) return false;
    (*pos)++;
    return true;
}

static int parse_ymd_prefix(const char *text, size_t *pos, cg_date *out, cg_err *err) {
    int y, m, d;
    if (!read_digits(text, pos, 4, &y) || !read_char(text, pos, '-') ||
        !read_digits(text, pos, 2, &m) || !read_char(text, pos, '-') ||
        !read_digits(text, pos, 2, &d))
        return cg_err_set(err, CG_EINVAL, "'%s' is not a date (want YYYY-MM-DD)", text);
    cg_err why;
    int rc = cg_date_from_ymd(y, m, d, out, &why);
    if (rc) return cg_err_set(err, rc, "'%s' is not a valid date: %s", text, why.msg);
    return CG_OK;
}

int cg_date_parse(const char *text, cg_date *out, cg_err *err) {
    size_t pos = 0;
    int rc = parse_ymd_prefix(text, &pos, out, err);
    if (rc) return rc;
    if (text[pos] != '\0')
        return cg_err_set(err, CG_EINVAL, "'%s' is not a date (want YYYY-MM-DD)", text);
    return CG_OK;
}

int cg_utc_offset_parse(const char *text, int32_t *offset_s, cg_err *err) {
    size_t pos = 0;
    if (strcmp(text, "Z") == 0 || strcmp(text, "z") == 0) {
        *offset_s = 0;
        return CG_OK;
    }
    int sign = text[0] == '+' ? 1 : text[0] == '-' ? -1 : 0;
    int hh, mm;
    pos = 1;
    if (!sign || !read_digits(text, &pos, 2, &hh) || !read_char(text, &pos, ':') ||
        !read_digits(text, &pos, 2, &mm) || text[pos] != '\0' || hh > 23 || mm > 59)
        return cg_err_set(err, CG_EINVAL, "'%s' is not a UTC offset (want +HH:MM, -HH:MM or Z)",
                          text);
    *offset_s = sign * (hh * 3600 + mm * 60);
    return CG_OK;
}

static int parse_clock(const char *text, size_t *pos, int64_t *us_of_day) {
    int hh, mi, ss;
    if (!read_digits(text, pos, 2, &hh) || !read_char(text, pos, ':') ||
        !read_digits(text, pos, 2, &mi) || !read_char(text, pos, ':') ||
        !read_digits(text, pos, 2, &ss) || hh > 23 || mi > 59 || ss > 60)
        return CG_EINVAL;
    if (ss == 60) ss = 59; /* a leap second is held at :59 */
    int64_t frac_us = 0;
    if (text[*pos] == '.') {
        (*pos)++;
        int digits = 0;
        while (text[*pos] >= '0' && text[*pos] <= '9') {
            if (digits < 6) frac_us = frac_us * 10 + (text[*pos] - '0');
            digits++;
            (*pos)++;
        }
        if (digits == 0 || digits > 9) return CG_EINVAL;
        for (int i = digits; i < 6; i++) frac_us *= 10;
    }
    *us_of_day = ((int64_t)hh * 3600 + mi * 60 + ss) * CG_US_PER_S + frac_us;
    return CG_OK;
}

int cg_time_parse(const char *text, int32_t utc_offset_s, int64_t *at_us, cg_err *err) {
    size_t pos = 0;
    cg_date date;
    int rc = parse_ymd_prefix(text, &pos, &date, err);
    if (rc) return rc;
    if (text[pos] == '\0') {
        *at_us = cg_date_start_us(date, utc_offset_s);
        return CG_OK;
    }
    if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')
        return cg_err_set(err, CG_EINVAL, "'%s' is not a date or RFC 3339 time", text);
    pos++;
    int64_t us_of_day;
    if (parse_clock(text, &pos, &us_of_day))
        return cg_err_set(err, CG_EINVAL, "'%s' has no valid time of day (want HH:MM:SS)", text);
    int32_t offset_s;
    if (cg_utc_offset_parse(text + pos, &offset_s, NULL))
        return cg_err_set(err, CG_EINVAL, "'%s' needs a UTC offset such as Z or +09:00", text);
    *at_us = (int64_t)date * CG_US_PER_DAY + us_of_day - (int64_t)offset_s * CG_US_PER_S;
    return CG_OK;
}

int cg_date_parse_or_instant(const char *text, int32_t utc_offset_s, cg_date *out, cg_err *err) {
    if (strlen(text) == 10) return cg_date_parse(text, out, err);
    int64_t at_us;
    int rc = cg_time_parse(text, utc_offset_s, &at_us, err);
    if (rc) return rc;
    *out = cg_time_to_date(at_us, utc_offset_s);
    return CG_OK;
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

cg_date cg_time_to_date(int64_t at_us, int32_t utc_offset_s) {
    return (cg_date)floor_div(at_us + (int64_t)utc_offset_s * CG_US_PER_S, CG_US_PER_DAY);
}

int64_t cg_date_start_us(cg_date date, int32_t utc_offset_s) {
    return (int64_t)date * CG_US_PER_DAY - (int64_t)utc_offset_s * CG_US_PER_S;
}

/* Writes v as exactly `width` decimal digits (v < 10^width, v >= 0). */
static char *put_digits(char *p, int64_t v, int width) {
    assert(v >= 0);
    for (int i = width - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
    return p + width;
}

/* "YYYY-MM-DD", 10 characters, for years 0..9999 (the fast path of the formatters). */
static char *put_date(char *p, int y, int m, int d) {
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    return put_digits(p, d, 2);
}

#define TIME_TEXT_BYTES_MAX 33 /* "YYYY-MM-DDTHH:MM:SS.ffffff+HH:MM" + NUL */

void cg_date_format(cg_date date, char *buf, size_t buf_bytes) {
    int y, m, d;
    civil_from_days(date, &y, &m, &d);
    if (y < 0 || y > 9999 || buf_bytes < 11) { /* rare: let snprintf sign and truncate */
        snprintf(buf, buf_bytes, "%04d-%02d-%02d", y, m, d);
        return;
    }
    *put_date(buf, y, m, d) = 0;
}

/* On the answer path of every quote: digits written by hand (snprintf was ~8 % of a quote's
 * server CPU); snprintf only for years outside 0..9999 or a short buffer. */
void cg_time_format(int64_t at_us, int32_t utc_offset_s, char *buf, size_t buf_bytes) {
    int64_t local_us = at_us + (int64_t)utc_offset_s * CG_US_PER_S;
    int64_t day = floor_div(local_us, CG_US_PER_DAY);
    int64_t us_of_day = local_us - day * CG_US_PER_DAY;
    int y, m, d;
    civil_from_days(day, &y, &m, &d);
    int64_t s = us_of_day / CG_US_PER_S, frac = us_of_day % CG_US_PER_S;
    int32_t off = utc_offset_s < 0 ? -utc_offset_s : utc_offset_s;
    if (y < 0 || y > 9999 || off >= 100 * 3600 || buf_bytes < TIME_TEXT_BYTES_MAX) {
        char frac_text[16] = "";
        if (frac) snprintf(frac_text, sizeof frac_text, ".%06lld", (long long)frac);
        snprintf(buf, buf_bytes, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02d:%02d", y, m, d,
                 (int)(s / 3600), (int)(s / 60 % 60), (int)(s % 60), frac_text,
                 utc_offset_s < 0 ? '-' : '+', (int)(off / 3600), (int)(off / 60 % 60));
        return;
    }
    char *p = put_date(buf, y, m, d);
    *p++ = 'T';
    p = put_digits(p, s / 3600, 2);
    *p++ = ':';
    p = put_digits(p, s / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, s % 60, 2);
    if (frac) {
        *p++ = '.';
        p = put_digits(p, frac, 6);
    }
    *p++ = utc_offset_s < 0 ? '-' : '+';
    p = put_digits(p, off / 3600 % 100, 2);
    *p++ = ':';
    p = put_digits(p, off / 60 % 60, 2);
    *p = 0;
    assert(p < buf + TIME_TEXT_BYTES_MAX);
}

int64_t cg_time_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * CG_US_PER_S + ts.tv_nsec / 1000;
}
