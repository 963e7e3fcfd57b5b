/* machine.h — the line every benchmark prints first: CPU model, CPU count, kernel and load
 * average, so a reader can tell which machine a figure came from and how busy it was. */
#ifndef CREDITGATE_BENCH_MACHINE_H
#define CREDITGATE_BENCH_MACHINE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* "machine: Linux x86_64, Intel(R) Xeon(R) Processor, 2 cpus, load average 1.9" + note. */
static inline void bench_print_machine(const char *note) {
    struct utsname u;
    uname(&u);
    char model[600] = "unknown cpu", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *colon = strchr(line, ':');
            snprintf(model, sizeof model, "%s", colon ? colon + 2 : line);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f) fclose(f);
    double load[3] = {0};
    if (getloadavg(load, 3) < 1) load[0] = -1;
    printf("machine: %s %s, %s, %ld cpus, load average %.1f%s%s\n", u.sysname, u.machine, model,
           sysconf(_SC_NPROCESSORS_ONLN), load[0], note && *note ? " " : "", note ? note : "");
}

#endif
