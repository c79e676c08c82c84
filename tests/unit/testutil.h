/* Helpers shared by the unit tests: temporary simulated hosts and files. */
#ifndef XEVF_TESTUTIL_H
#define XEVF_TESTUTIL_H


#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	chmod(path, 0700);
	return remove(path);
}

static inline void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory (caller frees and removes). */
static inline char *temp_dir(void)
{
	char *tmpl = strdup("/tmp/xevf-unit-XXXXXX");
	assert_non_null(tmpl);
	assert_non_null(mkdtemp(tmpl));
	return tmpl;
}

static inline char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *pathf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;

	va_start(ap, fmt);
	assert_true(vasprintf(&out, fmt, ap) >= 0);
	va_end(ap);
	return out;
}

/* Runs tests/sim/simhost.py with the given arguments after the root. */
static inline void simhost(const char *root, const char *cmd, const char *args)
{
	char *line = pathf("python3 %s %s %s %s >/dev/null", SIMHOST, cmd, root, args ? args : "");
	int rc = system(line);
	if (rc != 0)
		fail_msg("simhost failed (%d): %s", rc, line);
	free(line);
}

static inline void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* A simulated host and the roots to hand to discovery. */
struct sim {
	char *dir, *sysfs, *dev;
};

static inline struct sim sim_create(const char *args)
{
	struct sim s;
	s.dir = temp_dir();
	simhost(s.dir, "create", args);
	s.sysfs = pathf("%s/sys", s.dir);
	s.dev = pathf("%s/dev", s.dir);
	return s;
}

static inline char *sim_dev_file(const struct sim *s, const char *addr, const char *attr)
{
	return pathf("%s/devices/pci0000:00/%s/%s", s->sysfs, addr, attr);
}

static inline void sim_destroy(struct sim *s)
{
	rm_tree(s->dir);
	free(s->dir);
	free(s->sysfs);
	free(s->dev);
}

#endif
