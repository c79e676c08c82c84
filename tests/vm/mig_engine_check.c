/* Runs inside the real-kernel VM (tests/vm/mtty.sh): the driver's VFIO
 * migration engine against the kernel's mtty sample devices, a real
 * implementation of the migration uAPI (STOP_COPY | P2P | PRE_COPY). Each
 * check prints "MIG: ok <what>" or "MIG: FAIL <what>: <why>".
 *   mig_engine_check SRC_UUID SRC_GROUP DST_UUID DST_GROUP ONEPORT_UUID ONEPORT_GROUP
 * For the agents' test it also writes a device's UART as a VM would, and reads
 * it back after the agents moved its state:
 *   mig_engine_check uart-write UUID GROUP SCR   (port 0 SCR, port 1 ~SCR, FIFO "xevf")
 *   mig_engine_check uart-read UUID GROUP        (prints "MIG: uart UUID scr0=.. scr1=.. fifo='..'")
 * The devices are mdevs: their VFIO names are 36-character UUIDs. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "xevf_vfio_mig.h"
#include "xevf_vfio_uapi.h"

#define UART_RX_TX 0
#define UART_SCR 7

static int failures;

static void result(bool ok, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void result(bool ok, const char *what, const char *fmt, ...)
{
	va_list ap;

	printf("MIG: %s %s", ok ? "ok" : "FAIL", what);
	if (fmt) {
		printf(": ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	printf("\n");
	fflush(stdout);
	failures += !ok;
}

struct dev {
	const char *uuid, *group;
	struct xevf_mig_device mig;
	uint64_t bar[2]; /* region offsets of the ports' BARs */
};

static bool open_dev(struct dev *d)
{
	struct xevf_err err = XEVF_ERR_INIT;
	bool ok = xevf_mig_open_group(&d->mig, "/dev", d->group, d->uuid, &err) == 0 &&
		  xevf_mig_probe(&d->mig, "mtty", &err) == 0;

	for (unsigned i = 0; ok && i < 2; i++) {
		struct vfio_region_info info = {.argsz = sizeof(info), .index = VFIO_PCI_BAR0_REGION_INDEX + i};
		d->bar[i] = ioctl(d->mig.fd, VFIO_DEVICE_GET_REGION_INFO, &info) == 0 && info.size ? info.offset : UINT64_MAX;
	}
	if (!ok)
		result(false, "open", "%s", xevf_err_msg(&err));
	xevf_err_clear(&err);
	return ok;
}

static bool reg_write(struct dev *d, unsigned port, unsigned reg, uint8_t v)
{
	return d->bar[port] != UINT64_MAX && pwrite(d->mig.fd, &v, 1, (off_t)(d->bar[port] + reg)) == 1;
}

static int reg_read(struct dev *d, unsigned port, unsigned reg)
{
	uint8_t v;
	return d->bar[port] != UINT64_MAX && pread(d->mig.fd, &v, 1, (off_t)(d->bar[port] + reg)) == 1 ? v : -1;
}

/* The UART contents a VM would have left: scratch registers and FIFO bytes */
static bool write_uart(struct dev *d, uint8_t scr0, uint8_t scr1, const char *fifo)
{
	bool ok = reg_write(d, 0, UART_SCR, scr0) && reg_write(d, 1, UART_SCR, scr1);
	for (const char *p = fifo; ok && *p; p++)
		ok = reg_write(d, 0, UART_RX_TX, (uint8_t)*p);
	return ok;
}

/* Reads back what write_uart wrote (the FIFO is consumed). */
static bool uart_is(struct dev *d, uint8_t scr0, uint8_t scr1, const char *fifo, char *seen, size_t cap)
{
	int s0 = reg_read(d, 0, UART_SCR), s1 = reg_read(d, 1, UART_SCR);
	size_t n = 0;
	bool ok = s0 == scr0 && s1 == scr1;

	for (const char *p = fifo; *p; p++) {
		int c = reg_read(d, 0, UART_RX_TX);
		ok = ok && c == (uint8_t)*p;
		if (n + 1 < cap)
			seen[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	seen[n] = '\0';
	if (!ok)
		snprintf(seen + n, cap - n, " scr0=0x%x scr1=0x%x", (unsigned)s0, (unsigned)s1);
	return ok;
}

struct buf {
	unsigned char *data;
	size_t len, pos, fail_after;
};

static int to_buf(void *ctx, const char *phase, const void *p, size_t len, struct xevf_err *err)
{
	struct buf *b = ctx;
	unsigned char *grown;

	(void)phase;
	if (b->fail_after && b->len + len > b->fail_after)
		return xevf_err_set(err, ECONNRESET, "the target went away");
	if (!(grown = realloc(b->data, b->len + len)))
		return xevf_err_set(err, ENOMEM, "out of memory");
	b->data = grown;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	return 0;
}

static ssize_t from_buf(void *ctx, void *p, size_t cap, struct xevf_err *err)
{
	struct buf *b = ctx;
	size_t n = b->len - b->pos < cap ? b->len - b->pos : cap;

	(void)err;
	memcpy(p, b->data + b->pos, n);
	b->pos += n;
	return (ssize_t)n;
}

static bool save(struct dev *d, bool precopy, struct buf *out, struct xevf_mig_report *rep, struct xevf_err *err)
{
	struct xevf_mig_options opts = {.chunk_size = 16, .precopy = precopy};
	return xevf_mig_save(&d->mig, &opts, to_buf, out, rep, err) == 0;
}

static int restore(struct dev *d, struct buf *in, struct xevf_mig_report *rep, struct xevf_err *err)
{
	struct xevf_mig_options opts = {.chunk_size = 16};
	in->pos = 0;
	return xevf_mig_restore(&d->mig, &opts, from_buf, in, rep, err);
}

static void check_save_restore(struct dev *src, struct dev *dst, bool precopy, uint8_t scr)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_mig_report rep, saved = {0};
	struct buf b = {0};
	char seen[64];
	const char *what = precopy ? "save with PRE_COPY, restore into the second device" :
				     "save without PRE_COPY, restore into the second device";

	if (!write_uart(src, scr, (uint8_t)~scr, "xevf")) {
		result(false, what, "cannot write the source's UART");
		return;
	}
	if (!save(src, precopy, &b, &saved, &err))
		result(false, what, "save: %s", xevf_err_msg(&err));
	else if (precopy != (saved.precopy_bytes > 0))
		result(false, what, "pre-copy bytes %llu", (unsigned long long)saved.precopy_bytes);
	else if (restore(dst, &b, &rep, &err) || xevf_mig_walk(&dst->mig, XEVF_MIG_RUNNING, &err))
		result(false, what, "restore: %s", xevf_err_msg(&err));
	else if (!uart_is(dst, scr, (uint8_t)~scr, "xevf", seen, sizeof(seen)))
		result(false, what, "the target's UART has '%s'", seen);
	else
		result(true, what, "%zu bytes (pre-copy %llu, stop-copy %llu), the target's UART has the scratch registers "
		       "and FIFO '%s'", b.len, (unsigned long long)saved.precopy_bytes,
		       (unsigned long long)saved.stopcopy_bytes, seen);
	/* the source VM keeps its VF: an abort walks it back to RUNNING with its state */
	if (xevf_mig_recover(&src->mig, XEVF_MIG_RUNNING, NULL, &err) || reg_read(src, 0, UART_SCR) != scr)
		result(false, "the source walks back to RUNNING", "%s", xevf_err_msg(&err));
	free(b.data);
	xevf_err_clear(&err);
}

static void grow(struct buf *b, size_t extra)
{
	unsigned char *p = realloc(b->data, b->len + extra);

	if (!p)
		return;
	memset(p + b->len, 0, extra);
	b->data = p;
	b->len += extra;
}

/* A damaged stream never runs: refused, the target reset, RUNNING again */
static void check_refused(struct dev *src, struct dev *dst, const char *what, int damage)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_mig_report rep;
	struct buf b = {0};
	int rc;

	if (!save(src, false, &b, &rep, &err)) {
		result(false, what, "save: %s", xevf_err_msg(&err));
	} else {
		if (xevf_mig_recover(&src->mig, XEVF_MIG_RUNNING, NULL, NULL))
			result(false, "the source walks back to RUNNING", "after %s", what);
		if (damage == 0 && b.len)
			b.data[0] ^= 0xff; /* the header */
		else if (damage == 1)
			b.len -= b.len > 10 ? 10 : 0;
		else if (damage == 2)
			grow(&b, 4096);
		rc = b.data ? restore(dst, &b, &rep, &err) : -ENOMEM;
		if (rc == 0)
			result(false, what, "the device took it");
		else if (!rep.reset_used || dst->mig.state != XEVF_MIG_RUNNING)
			result(false, what, "refused (%s) but left in %s, reset %d", xevf_err_msg(&err),
			       xevf_mig_state_name(dst->mig.state), rep.reset_used);
		else
			result(true, what, "%s; the target was reset and is RUNNING", xevf_err_msg(&err));
	}
	free(b.data);
	xevf_err_clear(&err);
}

static void check_failed_save(struct dev *src)
{
	struct xevf_err err = XEVF_ERR_INIT;
	struct xevf_mig_report rep;
	struct buf b = {.fail_after = 30};
	const char *what = "a save whose target goes away walks the source back to RUNNING";

	reg_write(src, 0, UART_SCR, 0x77);
	if (save(src, true, &b, &rep, &err))
		result(false, what, "the save succeeded");
	else if (src->mig.state != XEVF_MIG_RUNNING || rep.reset_used || reg_read(src, 0, UART_SCR) != 0x77)
		result(false, what, "state %s reset %d scr 0x%x", xevf_mig_state_name(src->mig.state), rep.reset_used,
		       (unsigned)reg_read(src, 0, UART_SCR));
	else
		result(true, what, "%s; RUNNING without a reset, the UART kept", xevf_err_msg(&err));
	free(b.data);
	xevf_err_clear(&err);
}

static int uart(int argc, char **argv)
{
	struct dev d = {.uuid = argv[2], .group = argv[3]};
	char fifo[8] = "";
	int rc = 1;

	if (!open_dev(&d))
		return 1;
	if (strcmp(argv[1], "uart-write") == 0 && argc == 5) {
		uint8_t scr = (uint8_t)strtoul(argv[4], NULL, 0);
		rc = write_uart(&d, scr, (uint8_t)~scr, "xevf") ? 0 : 1;
		printf("MIG: uart %s written scr0=0x%x: %s\n", d.uuid, scr, rc ? "FAIL" : "ok");
	} else if (strcmp(argv[1], "uart-read") == 0) {
		for (size_t i = 0; i < 4; i++) {
			int c = reg_read(&d, 0, UART_RX_TX);
			fifo[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
		printf("MIG: uart %s scr0=0x%x scr1=0x%x fifo='%s'\n", d.uuid, (unsigned)reg_read(&d, 0, UART_SCR),
		       (unsigned)reg_read(&d, 1, UART_SCR), fifo);
		rc = 0;
	}
	xevf_mig_close(&d.mig);
	return rc;
}

int main(int argc, char **argv)
{
	struct dev src = {0}, dst = {0}, one = {0}, again = {0};
	struct xevf_err err = XEVF_ERR_INIT;

	if (argc >= 4 && strncmp(argv[1], "uart-", 5) == 0)
		return uart(argc, argv);

	if (argc != 7) {
		fprintf(stderr, "usage: %s SRC_UUID SRC_GROUP DST_UUID DST_GROUP ONEPORT_UUID ONEPORT_GROUP\n", argv[0]);
		return 2;
	}
	src = (struct dev){.uuid = argv[1], .group = argv[2]};
	dst = (struct dev){.uuid = argv[3], .group = argv[4]};
	one = (struct dev){.uuid = argv[5], .group = argv[6]};
	if (!open_dev(&src) || !open_dev(&dst) || !open_dev(&one))
		return 1;
	result(src.mig.flags == (XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_P2P | XEVF_MIG_F_PRE_COPY), "probe", "flags 0x%llx",
	       (unsigned long long)src.mig.flags);
	again = (struct dev){.uuid = argv[1], .group = argv[2]};
	int busy = xevf_mig_open_group(&again.mig, "/dev", again.group, again.uuid, &err);
	result(busy == -EBUSY, "a second opener of a held device gets EBUSY", "%s", xevf_err_msg(&err));
	xevf_err_clear(&err);
	check_save_restore(&src, &dst, true, 0x5a);
	check_save_restore(&src, &dst, false, 0x33);
	check_refused(&src, &dst, "a corrupted stream is refused", 0);
	check_refused(&src, &dst, "a truncated stream is refused", 1);
	check_refused(&src, &dst, "an oversized stream is refused", 2);
	check_refused(&src, &one, "a 2-port state is refused by a 1-port device", 3);
	check_failed_save(&src);
	xevf_mig_close(&src.mig);
	xevf_mig_close(&dst.mig);
	xevf_mig_close(&one.mig);
	printf("MIG: done, %d failed\n", failures);
	return failures ? 1 : 0;
}
