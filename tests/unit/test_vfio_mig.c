/* The VFIO migration engine against the simulated device, which accepts only
 * the uAPI's direct arcs and can fail on cue. */
#include "testutil.h"

#include <errno.h>

#include "xevf_vfio_mig.h"
#include "xevf_vfio_uapi.h"
#include "vfio_sim.h"

#define ALL (XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_PRE_COPY)

struct fixture {
	struct vfio_sim *sim;
	struct xevf_mig_device dev;
	struct xevf_err err;
};

static struct fixture *make(uint64_t flags, const char *content)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(vfio_sim_new("0000:4d:00.1", flags, content, content ? strlen(content) : 0, NULL,
					   &f->sim, &f->err), 0);
	assert_int_equal(xevf_mig_init(&f->dev, "0000:4d:00.1", vfio_sim_fd(f->sim), true,
				       vfio_sim_ops(f->sim), &f->err), 0);
	return f;
}

static void destroy(struct fixture *f)
{
	xevf_mig_close(&f->dev);
	vfio_sim_free(f->sim);
	xevf_err_clear(&f->err);
	free(f);
}

/* a growable byte buffer as sink and source */
struct stream {
	unsigned char *data;
	size_t len, pos;
	size_t max_chunk;
	unsigned chunks;
	size_t fail_after;   /* sink fails once this many bytes arrived; 0: never */
	bool saw_precopy;
};

static int sink(void *ctx, const char *phase, const void *buf, size_t len, struct xevf_err *err)
{
	struct stream *s = ctx;
	if (strcmp(phase, "precopy") == 0)
		s->saw_precopy = true;
	if (s->fail_after && s->len + len > s->fail_after)
		return xevf_err_set(err, ECONNRESET, "the target went away");
	s->data = realloc(s->data, s->len + len);
	assert_non_null(s->data);
	memcpy(s->data + s->len, buf, len);
	s->len += len;
	s->chunks++;
	if (len > s->max_chunk)
		s->max_chunk = len;
	return 0;
}

/* A device state a test can print: first, first + 1, ... through the alphabet, NUL-terminated. */
static void letters(char *buf, size_t size, char first)
{
	for (size_t i = 0; i + 1 < size; i++)
		buf[i] = (char)(first + i % 26);
	buf[size - 1] = 0;
}

static ssize_t source(void *ctx, void *buf, size_t cap, struct xevf_err *err)
{
	struct stream *s = ctx;
	(void)err;
	size_t n = s->len - s->pos < cap ? s->len - s->pos : cap;
	memcpy(buf, s->data + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

static void test_arcs_follow_the_uapi(void **state)
{
	(void)state;
	assert_true(xevf_mig_arc_allowed(ALL, XEVF_MIG_RUNNING, XEVF_MIG_PRE_COPY));
	assert_true(xevf_mig_arc_allowed(ALL, XEVF_MIG_PRE_COPY, XEVF_MIG_STOP_COPY));
	assert_true(xevf_mig_arc_allowed(ALL, XEVF_MIG_STOP, XEVF_MIG_RESUMING));
	assert_false(xevf_mig_arc_allowed(XEVF_MIG_F_STOP_COPY, XEVF_MIG_RUNNING, XEVF_MIG_PRE_COPY));
	assert_false(xevf_mig_arc_allowed(ALL, XEVF_MIG_RUNNING, XEVF_MIG_STOP_COPY)); /* a combination arc */
	assert_false(xevf_mig_arc_allowed(ALL, XEVF_MIG_STOP_COPY, XEVF_MIG_PRE_COPY));
	assert_false(xevf_mig_arc_allowed(ALL, XEVF_MIG_RUNNING, XEVF_MIG_RESUMING));
	assert_false(xevf_mig_arc_allowed(ALL, XEVF_MIG_ERROR, XEVF_MIG_RUNNING));
	assert_false(xevf_mig_arc_allowed(ALL, XEVF_MIG_RUNNING, XEVF_MIG_RUNNING_P2P));
	assert_true(xevf_mig_arc_allowed(ALL | XEVF_MIG_F_P2P, XEVF_MIG_RUNNING, XEVF_MIG_RUNNING_P2P));
	/* on a P2P device RUNNING/STOP and PRE_COPY/STOP_COPY meet only through the P2P states */
	const uint64_t xe = XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_P2P;
	assert_false(xevf_mig_arc_allowed(xe, XEVF_MIG_RUNNING, XEVF_MIG_STOP));
	assert_false(xevf_mig_arc_allowed(xe, XEVF_MIG_STOP, XEVF_MIG_RUNNING));
	assert_true(xevf_mig_arc_allowed(xe, XEVF_MIG_STOP, XEVF_MIG_RUNNING_P2P));
	assert_false(xevf_mig_arc_allowed(ALL | XEVF_MIG_F_P2P, XEVF_MIG_PRE_COPY, XEVF_MIG_STOP_COPY));
	assert_true(xevf_mig_arc_allowed(ALL | XEVF_MIG_F_P2P, XEVF_MIG_PRE_COPY_P2P, XEVF_MIG_STOP_COPY));
	assert_false(xevf_mig_arc_allowed(xe, XEVF_MIG_RUNNING_P2P, XEVF_MIG_PRE_COPY_P2P));
	assert_true(xevf_mig_arc_allowed(ALL, XEVF_MIG_STOP, XEVF_MIG_RUNNING));
	assert_string_equal(xevf_mig_state_name(XEVF_MIG_PRE_COPY_P2P), "PRE_COPY_P2P");
	assert_string_equal(xevf_mig_state_name(99), "UNKNOWN");
}

/* Each flag set a device may report, with the arcs the engine must take:
 * xe-vfio-pci's (STOP_COPY | P2P), mtty's (all three), and the two without P2P. */
struct flag_case {
	const char *kind;
	const char *save, *restore, *back_from_stopcopy, *back_from_stop;
};

static const struct flag_case flag_cases[] = {
	{"xe",
	 "RUNNING>RUNNING_P2P RUNNING_P2P>STOP STOP>STOP_COPY STOP_COPY>STOP",
	 "RUNNING>RUNNING_P2P RUNNING_P2P>STOP STOP>RESUMING RESUMING>STOP STOP>RUNNING_P2P RUNNING_P2P>RUNNING",
	 "STOP_COPY>STOP STOP>RUNNING_P2P RUNNING_P2P>RUNNING", "STOP>RUNNING_P2P RUNNING_P2P>RUNNING"},
	{"stop-copy",
	 "RUNNING>STOP STOP>STOP_COPY STOP_COPY>STOP",
	 "RUNNING>STOP STOP>RESUMING RESUMING>STOP STOP>RUNNING",
	 "STOP_COPY>STOP STOP>RUNNING", "STOP>RUNNING"},
	{"pre-copy",
	 "RUNNING>PRE_COPY PRE_COPY>STOP_COPY STOP_COPY>STOP",
	 "RUNNING>STOP STOP>RESUMING RESUMING>STOP STOP>RUNNING",
	 "STOP_COPY>STOP STOP>RUNNING", "STOP>RUNNING"},
	{"p2p-pre-copy",
	 "RUNNING>PRE_COPY PRE_COPY>PRE_COPY_P2P PRE_COPY_P2P>STOP_COPY STOP_COPY>STOP",
	 "RUNNING>RUNNING_P2P RUNNING_P2P>STOP STOP>RESUMING RESUMING>STOP STOP>RUNNING_P2P RUNNING_P2P>RUNNING",
	 "STOP_COPY>STOP STOP>RUNNING_P2P RUNNING_P2P>RUNNING", "STOP>RUNNING_P2P RUNNING_P2P>RUNNING"},
};

static struct fixture *make_kind(const char *kind, const char *content, uint32_t device_id)
{
	uint64_t flags = 0;
	struct fixture *f;

	assert_int_equal(vfio_sim_flags_parse(kind, &flags), 0);
	f = make(flags, content);
	vfio_sim_set_kind(f->sim, device_id, 0x01);
	assert_int_equal(xevf_mig_probe(&f->dev, "xe-vfio-pci", &f->err), 0);
	return f;
}

/* The trace after the first n arcs (the rest of a test's trace). */
static const char *trace_after(const struct fixture *f, unsigned n)
{
	const char *t = vfio_sim_trace(f->sim);
	for (unsigned i = 0; i < n && (t = strchr(t, ' ')); i++)
		t++;
	return t ? t : "";
}

static unsigned arcs_in(const char *trace)
{
	unsigned n = *trace ? 1 : 0;
	for (; *trace; trace++)
		n += *trace == ' ';
	return n;
}

static void test_each_flag_set_saves_restores_and_walks_back_over_direct_arcs(void **state)
{
	(void)state;
	char content[70000];
	letters(content, sizeof(content), 'A');
	for (size_t c = 0; c < sizeof(flag_cases) / sizeof(flag_cases[0]); c++) {
		const struct flag_case *fc = &flag_cases[c];
		struct fixture *src = make_kind(fc->kind, content, 0xe211);
		struct fixture *dst = make_kind(fc->kind, "the target's old state", 0xe211);
		struct fixture *other = make_kind(fc->kind, "another device id", 0xe212);
		struct xevf_mig_options opts = {.chunk_size = 8192, .precopy = true};
		struct xevf_mig_report rep;
		struct stream s = {0}, cut = {0};
		size_t len;
		bool reset = false;

		/* save, and the walk back of an aborted source from STOP */
		assert_int_equal(xevf_mig_save(&src->dev, &opts, sink, &s, &rep, &src->err), 0);
		assert_string_equal(vfio_sim_trace(src->sim), fc->save);
		assert_int_equal(xevf_mig_recover(&src->dev, XEVF_MIG_RUNNING, &reset, &src->err), 0);
		assert_false(reset);
		assert_string_equal(trace_after(src, arcs_in(fc->save)), fc->back_from_stop);
		/* restore, then commit's walk to RUNNING */
		assert_int_equal(xevf_mig_restore(&dst->dev, &opts, source, &s, &rep, &dst->err), 0);
		assert_int_equal(xevf_mig_walk(&dst->dev, XEVF_MIG_RUNNING, &dst->err), 0);
		assert_string_equal(vfio_sim_trace(dst->sim), fc->restore);
		assert_memory_equal(vfio_sim_content(dst->sim, &len), content, strlen(content));
		/* another device id: refused as xe-vfio-pci refuses it, the target reset, never run */
		s.pos = 0;
		assert_int_equal(xevf_mig_restore(&other->dev, &opts, source, &s, &rep, &other->err), -EINVAL);
		assert_true(rep.reset_used);
		assert_int_equal(vfio_sim_state(other->sim), XEVF_MIG_RUNNING);
		assert_memory_equal(vfio_sim_content(other->sim, &len), "", 0);
		/* a target that goes away in STOP_COPY: the source walks back and keeps its state */
		destroy(src);
		src = make_kind(fc->kind, content, 0xe211);
		cut.fail_after = s.len - 100;
		assert_int_equal(xevf_mig_save(&src->dev, &opts, sink, &cut, &rep, &src->err), -ECONNRESET);
		assert_false(rep.reset_used);
		assert_int_equal(vfio_sim_state(src->sim), XEVF_MIG_RUNNING);
		assert_string_equal(trace_after(src, arcs_in(fc->save) - 1), fc->back_from_stopcopy);
		assert_memory_equal(vfio_sim_content(src->sim, &len), content, strlen(content));
		free(s.data);
		free(cut.data);
		destroy(src);
		destroy(dst);
		destroy(other);
	}
}

static void test_not_migratable(void **state)
{
	(void)state;
	struct fixture *f = make(0, "x");
	assert_int_equal(xevf_mig_probe(&f->dev, "vfio-pci", &f->err), -ENOTTY);
	assert_non_null(strstr(xevf_err_msg(&f->err), "0000:4d:00.1: not migratable"));
	assert_non_null(strstr(xevf_err_msg(&f->err), "vfio-pci"));
	assert_non_null(strstr(xevf_err_msg(&f->err), "xe-vfio-pci"));
	destroy(f);
}

static void test_save_restore_with_precopy(void **state)
{
	(void)state;
	char content[300000];
	letters(content, sizeof(content), 'a');
	struct fixture *src = make(ALL, content);
	struct fixture *dst = make(ALL, "old state of the target");
	struct xevf_mig_options opts = {.chunk_size = 4096, .precopy = true};
	struct xevf_mig_report rep;
	struct stream s = {0};

	assert_int_equal(xevf_mig_probe(&src->dev, "xe-vfio-pci", &src->err), 0);
	assert_int_equal(xevf_mig_save(&src->dev, &opts, sink, &s, &rep, &src->err), 0);
	assert_true(s.saw_precopy);
	assert_true(rep.precopy_bytes > 0 && rep.stopcopy_bytes > 0);
	assert_int_equal(rep.precopy_bytes + rep.stopcopy_bytes, s.len);
	assert_true(s.max_chunk <= 4096);  /* bounded chunks */
	assert_true(vfio_sim_precopy_queries(src->sim) > 0);
	assert_int_equal(vfio_sim_state(src->sim), XEVF_MIG_STOP);
	assert_string_equal(vfio_sim_trace(src->sim), "RUNNING>PRE_COPY PRE_COPY>STOP_COPY STOP_COPY>STOP");

	assert_int_equal(xevf_mig_restore(&dst->dev, &opts, source, &s, &rep, &dst->err), 0);
	assert_int_equal(rep.restored_bytes, s.len);
	assert_int_equal(vfio_sim_state(dst->sim), XEVF_MIG_STOP);
	assert_int_equal(xevf_mig_step(&dst->dev, XEVF_MIG_RUNNING, NULL, &dst->err), 0);
	assert_string_equal(vfio_sim_trace(dst->sim), "RUNNING>STOP STOP>RESUMING RESUMING>STOP STOP>RUNNING");
	size_t len;
	const unsigned char *got = vfio_sim_content(dst->sim, &len);
	assert_int_equal(len, strlen(content));
	assert_memory_equal(got, content, len);
	free(s.data);
	destroy(src);
	destroy(dst);
}

static void test_save_without_precopy(void **state)
{
	(void)state;
	struct fixture *f = make(XEVF_MIG_F_STOP_COPY, "device state");
	struct stream s = {0};
	struct xevf_mig_report rep;

	assert_int_equal(xevf_mig_save(&f->dev, NULL, sink, &s, &rep, &f->err), 0);
	assert_false(s.saw_precopy);
	assert_int_equal(rep.precopy_bytes, 0);
	assert_string_equal(vfio_sim_trace(f->sim), "RUNNING>STOP STOP>STOP_COPY STOP_COPY>STOP");
	free(s.data);
	destroy(f);
}

static void test_sink_failure_leaves_source_running(void **state)
{
	(void)state;
	struct fixture *f = make(ALL, "a VM's live GPU state, long enough to need several chunks..........");
	struct xevf_mig_options opts = {.chunk_size = 16, .precopy = true};
	struct stream s = {.fail_after = 40};
	struct xevf_mig_report rep;

	assert_int_equal(xevf_mig_save(&f->dev, &opts, sink, &s, &rep, &f->err), -ECONNRESET);
	assert_non_null(strstr(xevf_err_msg(&f->err), "the target went away"));
	assert_int_equal(vfio_sim_state(f->sim), XEVF_MIG_RUNNING);
	assert_int_equal(rep.final_state, XEVF_MIG_RUNNING);
	assert_false(rep.reset_used); /* walked back, state kept */
	assert_int_equal(vfio_sim_resets(f->sim), 0);
	size_t len;
	vfio_sim_content(f->sim, &len);
	assert_true(len > 0);
	free(s.data);
	destroy(f);
}

static void test_failed_arc_recovers_from_the_state_the_kernel_names(void **state)
{
	(void)state;
	struct fixture *f = make(ALL, "state");
	struct stream s = {0};
	struct xevf_mig_report rep;

	/* PRE_COPY -> STOP_COPY fails and the "kernel" leaves the device in PRE_COPY */
	vfio_sim_fail_arc(f->sim, XEVF_MIG_PRE_COPY, XEVF_MIG_STOP_COPY, EIO, XEVF_MIG_PRE_COPY);
	assert_int_equal(xevf_mig_save(&f->dev, &(struct xevf_mig_options){.precopy = true}, sink, &s, &rep,
				       &f->err), -EIO);
	assert_non_null(strstr(xevf_err_msg(&f->err), "PRE_COPY -> STOP_COPY failed"));
	assert_non_null(strstr(xevf_err_msg(&f->err), "now in PRE_COPY"));
	assert_int_equal(vfio_sim_state(f->sim), XEVF_MIG_RUNNING);
	assert_false(rep.reset_used);
	assert_string_equal(vfio_sim_trace(f->sim), "RUNNING>PRE_COPY PRE_COPY>RUNNING");
	free(s.data);
	destroy(f);
}

static void test_error_state_needs_reset(void **state)
{
	(void)state;
	struct fixture *f = make(XEVF_MIG_F_STOP_COPY, "state");
	struct stream s = {0};
	struct xevf_mig_report rep;

	vfio_sim_fail_arc(f->sim, XEVF_MIG_STOP, XEVF_MIG_STOP_COPY, EIO, XEVF_MIG_ERROR);
	assert_int_equal(xevf_mig_save(&f->dev, NULL, sink, &s, &rep, &f->err), -EIO);
	assert_non_null(strstr(xevf_err_msg(&f->err), "now in ERROR"));
	assert_true(rep.reset_used);
	assert_int_equal(vfio_sim_resets(f->sim), 1);
	assert_int_equal(vfio_sim_state(f->sim), XEVF_MIG_RUNNING);
	destroy(f);

	/* and when even the reset fails, the message says so */
	f = make(XEVF_MIG_F_STOP_COPY, "state");
	vfio_sim_fail_arc(f->sim, XEVF_MIG_STOP, XEVF_MIG_STOP_COPY, EIO, XEVF_MIG_ERROR);
	vfio_sim_fail_reset(f->sim, ENODEV);
	assert_int_equal(xevf_mig_save(&f->dev, NULL, sink, &s, &rep, &f->err), -EIO);
	assert_non_null(strstr(xevf_err_msg(&f->err), "recovery failed too"));
	assert_non_null(strstr(xevf_err_msg(&f->err), "VFIO_DEVICE_RESET failed"));
	free(s.data);
	destroy(f);
}

static void test_truncated_or_corrupt_stream_is_refused_and_reset(void **state)
{
	(void)state;
	struct fixture *src = make(XEVF_MIG_F_STOP_COPY, "the real state");
	struct fixture *dst = make(XEVF_MIG_F_STOP_COPY, "target before");
	struct stream s = {0};
	struct xevf_mig_report rep;

	assert_int_equal(xevf_mig_save(&src->dev, NULL, sink, &s, &rep, &src->err), 0);
	s.len -= 3; /* truncated */
	assert_int_equal(xevf_mig_restore(&dst->dev, NULL, source, &s, &rep, &dst->err), -EINVAL);
	assert_non_null(strstr(xevf_err_msg(&dst->err), "RESUMING -> STOP failed"));
	assert_true(rep.reset_used);
	assert_int_equal(vfio_sim_state(dst->sim), XEVF_MIG_RUNNING);
	size_t len;
	vfio_sim_content(dst->sim, &len);
	assert_int_equal(len, 0); /* nothing of the partial state runs */

	s.len += 3;
	s.pos = 0;
	s.data[20] ^= 0x40; /* corrupted */
	assert_int_equal(xevf_mig_restore(&dst->dev, NULL, source, &s, &rep, &dst->err), -EINVAL);
	assert_int_equal(vfio_sim_resets(dst->sim), 2);
	free(s.data);
	destroy(src);
	destroy(dst);
}

static ssize_t failing_source(void *ctx, void *buf, size_t cap, struct xevf_err *err)
{
	(void)ctx;
	(void)buf;
	(void)cap;
	return xevf_err_set(err, ECONNABORTED, "the source aborted the migration");
}

static void test_restore_abort_resets(void **state)
{
	(void)state;
	struct fixture *f = make(XEVF_MIG_F_STOP_COPY, "target");
	struct xevf_mig_report rep;

	assert_int_equal(xevf_mig_restore(&f->dev, NULL, failing_source, NULL, &rep, &f->err), -ECONNABORTED);
	assert_true(rep.reset_used);
	assert_int_equal(vfio_sim_state(f->sim), XEVF_MIG_RUNNING);
	assert_string_equal(vfio_sim_trace(f->sim), "RUNNING>STOP STOP>RESUMING RESET");
	destroy(f);
}

/* SET_STATE straight to the simulated device, past the engine's own table. */
static int raw_set_state(struct vfio_sim *sim, uint32_t to)
{
	uint64_t storage[(sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_mig_state) + 7) / 8];
	struct vfio_device_feature *hdr = (struct vfio_device_feature *)storage;
	struct vfio_device_feature_mig_state *st = (struct vfio_device_feature_mig_state *)hdr->data;
	const struct xevf_vfio_ops *ops = vfio_sim_ops(sim);

	memset(storage, 0, sizeof(storage));
	hdr->argsz = sizeof(storage);
	hdr->flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
	st->device_state = to;
	return ops->ioctl(ops->ctx, vfio_sim_fd(sim), VFIO_DEVICE_FEATURE, hdr) < 0 ? -errno : 0;
}

/* The simulator judges arcs by its own table of the uAPI's direct arcs, not by
 * the engine's: on a P2P device RUNNING and STOP meet only through RUNNING_P2P. */
static void test_simulator_has_its_own_arc_table(void **state)
{
	struct vfio_sim *sim = NULL;
	struct xevf_err err = XEVF_ERR_INIT;
	(void)state;

	assert_int_equal(vfio_sim_new("0000:4d:00.1", XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_P2P, "s", 1, NULL, &sim, &err), 0);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_STOP), -EINVAL);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_RUNNING_P2P), 0);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_STOP), 0);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_RUNNING), -EINVAL);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_STOP_COPY), 0);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_PRE_COPY), -EINVAL); /* blocked in the uAPI */
	assert_string_equal(vfio_sim_trace(sim), "RUNNING>RUNNING_P2P RUNNING_P2P>STOP STOP>STOP_COPY");
	vfio_sim_free(sim);

	/* without P2P, RUNNING -> STOP is a direct arc */
	assert_int_equal(vfio_sim_new("0000:4d:00.2", XEVF_MIG_F_STOP_COPY, "s", 1, NULL, &sim, &err), 0);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_RUNNING_P2P), -EINVAL);
	assert_int_equal(raw_set_state(sim, XEVF_MIG_STOP), 0);
	vfio_sim_free(sim);
	xevf_err_clear(&err);
}

static void test_undefined_arc_is_refused_without_ioctl(void **state)
{
	(void)state;
	struct fixture *f = make(ALL, "s");
	assert_int_equal(xevf_mig_probe(&f->dev, NULL, &f->err), 0);
	assert_int_equal(xevf_mig_step(&f->dev, XEVF_MIG_RESUMING, NULL, &f->err), -EINVAL);
	assert_non_null(strstr(xevf_err_msg(&f->err), "RUNNING -> RESUMING is not an arc"));
	assert_string_equal(vfio_sim_trace(f->sim), "");
	destroy(f);
}

static void test_save_refuses_busy_device(void **state)
{
	(void)state;
	struct fixture *f = make(XEVF_MIG_F_STOP_COPY, "s");
	struct stream s = {0};
	assert_int_equal(xevf_mig_probe(&f->dev, NULL, &f->err), 0);
	assert_int_equal(xevf_mig_step(&f->dev, XEVF_MIG_STOP, NULL, &f->err), 0);
	assert_int_equal(xevf_mig_step(&f->dev, XEVF_MIG_RESUMING, NULL, &f->err), 0);
	assert_int_equal(xevf_mig_save(&f->dev, NULL, sink, &s, NULL, &f->err), -EBUSY);
	assert_non_null(strstr(xevf_err_msg(&f->err), "in RESUMING"));
	destroy(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arcs_follow_the_uapi),
		cmocka_unit_test(test_not_migratable),
		cmocka_unit_test(test_save_restore_with_precopy),
		cmocka_unit_test(test_each_flag_set_saves_restores_and_walks_back_over_direct_arcs),
		cmocka_unit_test(test_save_without_precopy),
		cmocka_unit_test(test_sink_failure_leaves_source_running),
		cmocka_unit_test(test_failed_arc_recovers_from_the_state_the_kernel_names),
		cmocka_unit_test(test_error_state_needs_reset),
		cmocka_unit_test(test_truncated_or_corrupt_stream_is_refused_and_reset),
		cmocka_unit_test(test_restore_abort_resets),
		cmocka_unit_test(test_undefined_arc_is_refused_without_ioctl),
		cmocka_unit_test(test_simulator_has_its_own_arc_table),
		cmocka_unit_test(test_save_refuses_busy_device),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
