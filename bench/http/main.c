/* bench/http — the HTTP server under wrk, against nginx serving a static 200-byte JSON file as
 * this machine's ceiling, in one run:
 *   1. nginx GET /static.json (64 connections)            -> ceiling requests/s
 *   2. POST /v1/quote (64 connections)                    -> peak requests/s, ratio to nginx
 *      (1 and 2 alternate for 3 rounds, --rounds; the best of each is kept: the machine is shared)
 *   3. POST /v1/quote paced at about half of that peak    -> p99 (wrk delay(), 1 ms per conn)
 *   4. POST /v1/charges (64 connections, unique keys)     -> durable charges/s (a warm-up of
 *      half a run, then --rounds runs; best and median printed, the goal judged on the median)
 *
 *   build/bench/http [--seconds S] [--rounds N] [--quote-threads N] [--charge-threads N]
 *                    [--quote-only 1]
 *
 * --quote-only 1 stops after the nginx/quote rounds (for profiling the quote: `perf record -p`).
 *
 * Needs wrk and nginx (Debian: apt-get install wrk nginx-light); without them it says so and
 * exits 0 so `make bench` still runs the others. Prints the figures, the goals and the machine. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../tests/http/client.h"
#include "creditgate/http.h"
#include "../machine.h"

#define ROUNDS_MAX 20
#define MEMBERS 16

typedef struct wrk_result {
    double rps;
    double p50_ms, p99_ms;
    long non_2xx;
    long errors;
} wrk_result;

static char dir[256];
static char admin[128], service[128];

static unsigned free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) abort();
    close(fd);
    return ntohs(a.sin_port);
}

static double to_ms(double v, const char *unit) {
    if (!strcmp(unit, "us")) return v / 1000.0;
    if (!strcmp(unit, "s")) return v * 1000.0;
    return v; /* ms */
}

/* Runs wrk and reads Requests/sec, the 50% and 99% latency lines, non-2xx and socket errors. */
static wrk_result run_wrk(int connections, double seconds, const char *script, const char *url) {
    char cmd[1024];
    int threads = connections < 2 ? 1 : 2;
    snprintf(cmd, sizeof cmd, "wrk -t%d -c%d -d%.0fs --latency %s%s %s 2>&1", threads, connections,
             seconds, script ? "-s " : "", script ? script : "", url);
    wrk_result r = {0};
    FILE *p = popen(cmd, "r");
    if (!p) return r;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        double v;
        char unit[8];
        long a, b, c, d;
        if (sscanf(line, " 50%% %lf%7s", &v, unit) == 2) r.p50_ms = to_ms(v, unit);
        else if (sscanf(line, " 99%% %lf%7s", &v, unit) == 2) r.p99_ms = to_ms(v, unit);
        else if (sscanf(line, "Requests/sec: %lf", &v) == 1) r.rps = v;
        else if (sscanf(line, " Non-2xx or 3xx responses: %ld", &a) == 1) r.non_2xx = a;
        else if (sscanf(line, " Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &a, &b, &c, &d) == 4)
            r.errors = a + b + c + d;
    }
    pclose(p);
    return r;
}

/* CPU time (user + system) of one process, in microseconds; 0 when it is gone. */
static double proc_cpu_us(pid_t pid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')'); /* fields after the command name */
    unsigned long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return 0;
    return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

/* nginx: the master and its workers (children listed by the kernel). */
static double nginx_cpu_us(pid_t master) {
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)master, (int)master);
    double total = proc_cpu_us(master);
    FILE *f = fopen(path, "r");
    int child;
    while (f && fscanf(f, "%d", &child) == 1) total += proc_cpu_us(child);
    if (f) fclose(f);
    return total;
}

static pid_t start_nginx(unsigned port) {
    char path[512];
    snprintf(path, sizeof path, "%s/static.json", dir);
    FILE *f = fopen(path, "w");
    const char *head = "{\"status\":\"ok\",\"static\":true,\"padding\":\"";
    fputs(head, f);
    for (size_t i = strlen(head); i < 198; i++) fputc('x', f);
    fputs("\"}", f); /* 200 bytes */
    fclose(f);
    snprintf(path, sizeof path, "%s/nginx.conf", dir);
    f = fopen(path, "w");
    fprintf(f, "worker_processes auto;\ndaemon off;\npid %s/nginx.pid;\nerror_log %s/nginx.err;\n"
               "events { worker_connections 4096; }\nhttp {\n access_log off;\n"
               " client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
               " uwsgi_temp_path %s; scgi_temp_path %s;\n keepalive_requests 100000000;\n"
               " server { listen 127.0.0.1:%u; root %s; default_type application/json; }\n}\n",
            dir, dir, dir, dir, dir, dir, dir, port, dir);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("nginx", "nginx", "-c", path, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) { /* wait until it answers */
        tc_response r = tc_request(port, "GET", "/static.json", NULL, NULL, NULL);
        int ok = r.status == 200 && r.body_bytes == 200;
        tc_free(&r);
        if (ok) break;
        usleep(20000);
    }
    return pid;
}

static cg_http_server *start_server(int threads, bool ledger) {
    cg_http_config c;
    cg_http_config_defaults(&c);
    c.port = 0;
    c.threads = threads;
    snprintf(c.keys_path, sizeof c.keys_path, "%s/keys", dir);
    snprintf(c.access_log_path, sizeof c.access_log_path, "off");
    c.connections_per_ip_max = 0; /* wrk is one address; the paced run may open > 256 */
    if (ledger) snprintf(c.db_path, sizeof c.db_path, "%s/ledger-%d.db", dir, threads);
    else c.db_path[0] = '\0';
    cg_http_server *srv = NULL;
    cg_err err = {0};
    if (cg_http_server_start(&c, &srv, &err)) {
        fprintf(stderr, "bench/http: server: %s\n", err.msg);
        exit(1);
    }
    return srv;
}

static void write_script(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void scripts(void) {
    char text[2048];
    snprintf(text, sizeof text,
             "wrk.method = \"POST\"\n"
             "wrk.body = '{\"member\":{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"},"
             "\"model\":\"Nanobanana Pro\",\"variant\":\"2k\"}'\n"
             "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
             "wrk.headers[\"Authorization\"] = \"Bearer %s\"\n", service);
    write_script("quote.lua", text);
    /* paced: each connection waits 1 ms before each request, so N connections offer at most
       about N thousand requests/s whatever the server does (wrk has no rate option) */
    strcat(text, "function delay() return 1 end\n");
    write_script("quote_paced.lua", text);
    /* every charge is a new one: a unique Idempotency-Key per request, members in rotation */
    snprintf(text, sizeof text,
             "local n = 0\nlocal id = tostring(math.random(1, 1e9))\n"
             "request = function()\n  n = n + 1\n"
             "  return wrk.format(\"POST\", \"/v1/charges\", {[\"Content-Type\"]=\"application/json\", "
             "[\"Authorization\"]=\"Bearer %s\", [\"Idempotency-Key\"]=id .. \"-\" .. n}, "
             "'{\"member_id\":\"bench' .. (n %% %d) .. '\",\"model\":\"midjourney\"}')\nend\n",
             service, MEMBERS);
    write_script("charge.lua", text);
}

static void seed(unsigned port) {
    for (int m = 0; m < MEMBERS; m++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/members/bench%d", m);
        tc_response r = tc_request(port, "PUT", path, service, NULL,
                                   "{\"plan\":\"plus\",\"billing\":\"monthly\",\"joined\":\"2025-11-25\"}");
        if (r.status != 200) fprintf(stderr, "seed member: %d %s\n", r.status, r.body);
        tc_free(&r);
        snprintf(path, sizeof path, "/v1/members/bench%d/grants", m);
        r = tc_request(port, "POST", path, admin, NULL, "{\"credits\":1000000000,\"source\":\"purchase\"}");
        if (r.status != 201) fprintf(stderr, "seed grant: %d %s\n", r.status, r.body);
        tc_free(&r);
    }
}


/* The machine is shared: print the load so a reader can tell a quiet run from a busy one. */
static void load_average(const char *when) {
    char text[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fgets(text, sizeof text, f)) text[strcspn(text, "\n")] = '\0';
    if (f) fclose(f);
    printf("load average %s: %s\n", when, text);
}

/* Median of count values (sorted in place); count <= ROUNDS_MAX. */
static double median(double *values, int count) {
    for (int i = 1; i < count; i++) /* insertion sort: a handful of rounds */
        for (int j = i; j > 0 && values[j - 1] > values[j]; j--) {
            double t = values[j];
            values[j] = values[j - 1];
            values[j - 1] = t;
        }
    if (count == 0) return 0;
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

static void row(const char *name, const wrk_result *r, int connections) {
    printf("%-34s %5d %12.0f %9.2f %9.2f %8ld\n", name, connections, r->rps, r->p50_ms, r->p99_ms,
           r->non_2xx + r->errors);
}

int main(int argc, char **argv) {
    double seconds = 5;
    int quote_threads = 32, charge_threads = 64, rounds = 3;
    bool quote_only = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--quote-threads")) quote_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--charge-threads")) charge_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--quote-only")) quote_only = atoi(argv[i + 1]) != 0;
    }
    if (system("command -v wrk >/dev/null && command -v nginx >/dev/null") != 0 &&
        system("command -v wrk >/dev/null && test -x /usr/sbin/nginx") != 0) {
        printf("bench/http: skipped — needs wrk and nginx (apt-get install wrk nginx-light)\n");
        return 0;
    }
    setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 0);
    signal(SIGPIPE, SIG_IGN);
    tc_tmpdir(dir, sizeof dir);
    tc_keys(dir, admin, service, sizeof admin);
    scripts();
    bench_print_machine("(wrk, nginx and the server share them)");
    load_average("before");
    char url[128], script[512];
    unsigned nginx_port = free_port();
    pid_t nginx = start_nginx(nginx_port);
    printf("%-34s %5s %12s %9s %9s %8s\n", "target", "conns", "requests/s", "p50 ms", "p99 ms", "errors");
    /* The machine is shared and noisy: alternate nginx and quote runs and keep each one's best
       round, so both figures come from the same minutes. */
    cg_http_server *srv = start_server(quote_threads, false);
    char nginx_url[128], quote_url[128];
    snprintf(nginx_url, sizeof nginx_url, "http://127.0.0.1:%u/static.json", nginx_port);
    snprintf(quote_url, sizeof quote_url, "http://127.0.0.1:%u/v1/quote", cg_http_server_port(srv));
    snprintf(script, sizeof script, "%s/quote.lua", dir);
    wrk_result ceiling = {0}, quote = {0};
    double round_ratio[ROUNDS_MAX] = {0}; /* each round's quote / nginx: the two back to back */
    double cpu_nginx_us = 0, cpu_quote_us = 0;
    if (rounds < 1) rounds = 1;
    if (rounds > ROUNDS_MAX) rounds = ROUNDS_MAX;
    for (int round = 0; round < rounds; round++) {
        /* CPU per request is the figure the neighbours disturb least: throughput falls when
           another job takes the cores, the work done per request does not. */
        double n0 = nginx_cpu_us(nginx);
        wrk_result n = run_wrk(64, seconds, NULL, nginx_url);
        double n_us = (nginx_cpu_us(nginx) - n0) / (n.rps * seconds);
        double q0 = proc_cpu_us(getpid());
        wrk_result q = run_wrk(64, seconds, script, quote_url);
        double q_us = (proc_cpu_us(getpid()) - q0) / (q.rps * seconds);
        printf("  round %d: nginx %.0f/s (%.1f us CPU each), quote %.0f/s (%.1f us CPU each)\n",
               round + 1, n.rps, n_us, q.rps, q_us);
        if (round == 0 || n_us < cpu_nginx_us) cpu_nginx_us = n_us;
        if (round == 0 || q_us < cpu_quote_us) cpu_quote_us = q_us;
        if (n.rps > ceiling.rps) ceiling = n;
        if (q.rps > quote.rps) quote = q;
        round_ratio[round] = n.rps > 0 ? q.rps / n.rps : 0;
    }
    kill(nginx, SIGQUIT);
    waitpid(nginx, NULL, 0);
    row("nginx static 200-byte JSON (best)", &ceiling, 64);
    row("POST /v1/quote (peak, best)", &quote, 64);
    if (quote_only) {
        cg_http_server_stop(srv);
        tc_rmdir(dir);
        double ratio = ceiling.rps > 0 ? quote.rps / ceiling.rps : 0;
        printf("quote / nginx: %.0f%% (round by round: median %.0f%%); server CPU per request: "
               "quote %.1f us, nginx %.1f us\n", ratio * 100, 100 * median(round_ratio, rounds),
               cpu_quote_us, cpu_nginx_us);
        return 0;
    }
    /* half of peak: paced connections offering about half the peak rate */
    snprintf(script, sizeof script, "%s/quote_paced.lua", dir);
    double target = quote.rps / 2;
    int half_conns = 0;
    wrk_result half = {0};
    for (int step = 0; step < 3; step++) { /* calibrate: each paced conn offers < 1000/s */
        double per_conn = half.rps > 0 ? half.rps / half_conns : 600;
        half_conns = (int)(target / per_conn + 0.5);
        if (half_conns < 1) half_conns = 1;
        if (half_conns > 512) half_conns = 512;
        half = run_wrk(half_conns, seconds, script, quote_url);
        if (half.rps > target * 0.9 && half.rps < target * 1.1) break;
    }
    row("POST /v1/quote (paced, ~half peak)", &half, half_conns);
    cg_http_server_stop(srv);

    srv = start_server(charge_threads, true);
    seed(cg_http_server_port(srv));
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", cg_http_server_port(srv));
    snprintf(script, sizeof script, "%s/charge.lua", dir);
    /* As many rounds as the quote's, best and median kept: one 4-second run swung 17-21k/s
       with the neighbours' load. The goal is judged on the median. */
    wrk_result charge = {0};
    double charge_rps[ROUNDS_MAX] = {0}, cpu_charge_us = 0;
    /* warm-up, not counted: the fresh ledger's first second (cold caches, first flush) */
    run_wrk(64, seconds / 2 > 1 ? seconds / 2 : 1, script, url);
    for (int round = 0; round < rounds; round++) {
        double c0 = proc_cpu_us(getpid());
        wrk_result c = run_wrk(64, seconds, script, url);
        double c_us = c.rps > 0 ? (proc_cpu_us(getpid()) - c0) / (c.rps * seconds) : 0;
        printf("  charges round %d: %.0f/s (%.1f us CPU each)\n", round + 1, c.rps, c_us);
        if (round == 0 || c_us < cpu_charge_us) cpu_charge_us = c_us;
        if (c.rps > charge.rps) charge = c;
        charge_rps[round] = c.rps;
    }
    double charge_median = median(charge_rps, rounds);
    row("POST /v1/charges (durable, best)", &charge, 64);
    cg_http_server_stop(srv);
    tc_rmdir(dir);

    load_average("after");
    double ratio = ceiling.rps > 0 ? quote.rps / ceiling.rps : 0;
    printf("quote / nginx: %.0f%% (goal >= 70%%: %s)\n", ratio * 100, ratio >= 0.70 ? "MET" : "NOT MET");
    /* Best of each can pair an nginx round from a quiet moment with a quote round from a busy
       one (or the reverse); the median of the back-to-back pairs is steadier on a shared box. */
    printf("quote / nginx round by round:");
    for (int i = 0; i < rounds; i++) printf(" %.0f%%", 100 * round_ratio[i]);
    printf(" (median %.0f%%)\n", 100 * median(round_ratio, rounds));
    printf("server CPU per request: quote %.1f us, nginx static %.1f us (ratio %.0f%%)\n",
           cpu_quote_us, cpu_nginx_us, cpu_quote_us > 0 ? 100 * cpu_nginx_us / cpu_quote_us : 0);
    printf("quote p99 at %.0f req/s (%.0f%% of peak): %.2f ms (goal < 2 ms: %s)\n", half.rps,
           quote.rps > 0 ? 100 * half.rps / quote.rps : 0, half.p99_ms,
           half.p99_ms < 2.0 ? "MET" : "NOT MET");
    printf("server CPU per charge (HTTP + ledger + SQLite): %.1f us\n", cpu_charge_us);
    printf("durable charges: best %.0f/s, median of %d rounds %.0f/s (goal >= 20,000/s, on the "
           "median: %s)\n", charge.rps, rounds, charge_median,
           charge_median >= 20000 ? "MET" : "NOT MET");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("server threads: quote %d (no ledger: the server runs min(that, %ld cores) = %ld), "
           "charges %d\n", quote_threads, cores, cores < quote_threads ? cores : (long)quote_threads,
           charge_threads);
    return 0;
}
