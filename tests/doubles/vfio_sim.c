#include "vfio_sim.h"
#include "xevf_sysfs.h"
#include "xevf_vfio_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIM_HDR 24        /* magic, u32 device id, u32 revision, u64 length */
#define SIM_TRAILER 8     /* u64 FNV-1a of the content */
#define SIM_MAX_CONTENT (64u << 20)

static const unsigned char sim_magic[8] = {'X', 'E', 'V', 'F', 'S', 'I', 'M', '1'};

struct vfio_sim {
	char *name;
	char *content_path;
	uint64_t flags;
	uint32_t device_id, revision; /* a state loads only into the same kind of device */
	uint64_t capacity;            /* what MIG_DATA_SIZE reports; 0: the current state's size */
	uint32_t state;
	int device_fd;        /* a placeholder fd standing for the VFIO device */
	int data_fd;          /* our reference to the open session's fd, -1 if none */
	size_t precopy_len;   /* bytes of the stream offered during PRE_COPY */
	unsigned char *stream;
	size_t stream_len;
	unsigned char *content;
	size_t content_len;
	unsigned char *loaded; /* state taken from RESUMING, runs on STOP -> RUNNING */
	size_t loaded_len;
	bool has_loaded;
	/* scripted failures */
	bool fail_armed;
	uint32_t fail_from, fail_to, fail_leave;
	int fail_errno;
	int reset_errno;
	/* observations */
	unsigned resets, precopy_queries;
	char *trace;
	size_t trace_len;
	struct xevf_vfio_ops ops;
};

/* The direct arcs of the VFIO migration FSM, as linux/vfio.h documents them
 * for vfio_mig_get_next_state: the only SET_STATE requests a driver is ever
 * asked to perform. Everything else the kernel splits into these steps, so a
 * user-space engine that sends anything else has taken a shortcut. Written
 * here from the uAPI text, independently of the engine's own table, so that
 * a mistake in the engine shows up as a refused arc. */
struct sim_arc {
	uint32_t from, to;
	uint64_t needs;    /* flags the device must have */
	uint64_t excludes; /* flags the device must not have */
};

static const struct sim_arc sim_arcs[] = {
	{XEVF_MIG_STOP, XEVF_MIG_STOP_COPY, 0, 0},
	{XEVF_MIG_STOP_COPY, XEVF_MIG_STOP, 0, 0},
	{XEVF_MIG_STOP, XEVF_MIG_RESUMING, 0, 0},
	{XEVF_MIG_RESUMING, XEVF_MIG_STOP, 0, 0},
	/* without P2P, RUNNING and STOP meet directly */
	{XEVF_MIG_RUNNING, XEVF_MIG_STOP, 0, XEVF_MIG_F_P2P},
	{XEVF_MIG_STOP, XEVF_MIG_RUNNING, 0, XEVF_MIG_F_P2P},
	/* with P2P, through the quiescent RUNNING_P2P */
	{XEVF_MIG_RUNNING, XEVF_MIG_RUNNING_P2P, XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_RUNNING_P2P, XEVF_MIG_RUNNING, XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_RUNNING_P2P, XEVF_MIG_STOP, XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_STOP, XEVF_MIG_RUNNING_P2P, XEVF_MIG_F_P2P, 0},
	/* PRE_COPY */
	{XEVF_MIG_RUNNING, XEVF_MIG_PRE_COPY, XEVF_MIG_F_PRE_COPY, 0},
	{XEVF_MIG_PRE_COPY, XEVF_MIG_RUNNING, XEVF_MIG_F_PRE_COPY, 0},
	{XEVF_MIG_PRE_COPY, XEVF_MIG_STOP_COPY, XEVF_MIG_F_PRE_COPY, XEVF_MIG_F_P2P},
	/* PRE_COPY with P2P */
	{XEVF_MIG_PRE_COPY, XEVF_MIG_PRE_COPY_P2P, XEVF_MIG_F_PRE_COPY | XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_PRE_COPY_P2P, XEVF_MIG_PRE_COPY, XEVF_MIG_F_PRE_COPY | XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_RUNNING_P2P, XEVF_MIG_PRE_COPY_P2P, XEVF_MIG_F_PRE_COPY | XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_PRE_COPY_P2P, XEVF_MIG_RUNNING_P2P, XEVF_MIG_F_PRE_COPY | XEVF_MIG_F_P2P, 0},
	{XEVF_MIG_PRE_COPY_P2P, XEVF_MIG_STOP_COPY, XEVF_MIG_F_PRE_COPY | XEVF_MIG_F_P2P, 0},
};

static bool sim_direct_arc(uint64_t flags, uint32_t from, uint32_t to)
{
	if (!(flags & XEVF_MIG_F_STOP_COPY))
		return false;
	for (size_t i = 0; i < sizeof(sim_arcs) / sizeof(sim_arcs[0]); i++) {
		const struct sim_arc *a = &sim_arcs[i];
		if (a->from == from && a->to == to && (flags & a->needs) == a->needs && !(flags & a->excludes))
			return true;
	}
	return false;
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void trace_arc(struct vfio_sim *sim, const char *what)
{
	size_t add = strlen(what) + 1;
	char *t = realloc(sim->trace, sim->trace_len + add + 1);
	if (!t)
		return;
	sim->trace = t;
	if (sim->trace_len)
		sim->trace[sim->trace_len++] = ' ';
	memcpy(sim->trace + sim->trace_len, what, add);
	sim->trace_len += add - 1;
}

static int set_content(struct vfio_sim *sim, const void *data, size_t len)
{
	unsigned char *copy = len > SIM_MAX_CONTENT ? NULL : malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	free(sim->content);
	sim->content = copy;
	sim->content_len = len;
	return 0;
}

/* The state file follows the device. A write that fails leaves the old file:
 * tests then see a state that did not change, which is what they check. */
static void persist(struct vfio_sim *sim)
{
	if (sim->content_path && xevf_write_file_atomic(sim->content_path, sim->content, sim->content_len, NULL) < 0)
		return;
}

static void end_session(struct vfio_sim *sim)
{
	if (sim->data_fd >= 0)
		close(sim->data_fd);
	sim->data_fd = -1;
	free(sim->stream);
	sim->stream = NULL;
	sim->stream_len = sim->precopy_len = 0;
}

/* Serialises the content; the first half is what pre-copy may send early. */
static int build_stream(struct vfio_sim *sim)
{
	size_t len = SIM_HDR + sim->content_len + SIM_TRAILER;
	unsigned char *s = malloc(len);
	if (!s)
		return -ENOMEM;
	memcpy(s, sim_magic, sizeof(sim_magic));
	put_u64(s + 8, (uint64_t)sim->device_id | (uint64_t)sim->revision << 32);
	put_u64(s + 16, sim->content_len);
	if (sim->content_len)
		memcpy(s + SIM_HDR, sim->content, sim->content_len);
	put_u64(s + SIM_HDR + sim->content_len, fnv1a(sim->content, sim->content_len));
	sim->stream = s;
	sim->stream_len = len;
	sim->precopy_len = sim->stream_len / 2;
	return 0;
}

/* A memfd holding stream[from, to); the caller gets a dup, we keep one */
static int open_session(struct vfio_sim *sim, size_t upto)
{
	int fd = memfd_create("xevf-sim-mig", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (upto && pwrite(fd, sim->stream, upto, 0) != (ssize_t)upto) {
		int e = errno ? errno : EIO;
		close(fd);
		return -e;
	}
	sim->data_fd = fd;
	int user = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return user < 0 ? -errno : user;
}

/* Leaving RESUMING: check what was written, as a driver checks a state. */
static int take_resumed(struct vfio_sim *sim)
{
	struct stat st;
	unsigned char *buf;
	size_t len;
	int rc = -EINVAL;

	if (fstat(sim->data_fd, &st) < 0)
		return -errno;
	len = (size_t)st.st_size;
	if (len < SIM_HDR + SIM_TRAILER || len > SIM_HDR + SIM_MAX_CONTENT + SIM_TRAILER)
		return -EINVAL;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	if (pread(sim->data_fd, buf, len, 0) != (ssize_t)len) {
		free(buf);
		return -EIO;
	}
	uint64_t kind = get_u64(buf + 8), n = get_u64(buf + 16);
	/* as xe-vfio-pci: another device id or revision is refused */
	if (memcmp(buf, sim_magic, sizeof(sim_magic)) == 0 && kind == ((uint64_t)sim->device_id | (uint64_t)sim->revision << 32) &&
	    n == len - SIM_HDR - SIM_TRAILER &&
	    get_u64(buf + SIM_HDR + n) == fnv1a(buf + SIM_HDR, (size_t)n)) {
		free(sim->loaded);
		sim->loaded = malloc(n ? (size_t)n : 1);
		if (sim->loaded) {
			memcpy(sim->loaded, buf + SIM_HDR, (size_t)n);
			sim->loaded_len = (size_t)n;
			sim->has_loaded = true;
			rc = 0;
		} else {
			rc = -ENOMEM;
		}
	}
	free(buf);
	return rc;
}

static int set_state(struct vfio_sim *sim, struct vfio_device_feature_mig_state *st)
{
	uint32_t from = sim->state, to = st->device_state;
	char what[40];
	int rc;

	st->data_fd = -1;
	if (to == from)
		return 0;
	if (!sim_direct_arc(sim->flags, from, to)) { /* direct arcs only, never a combination */
		errno = EINVAL;
		return -1;
	}
	if (sim->fail_armed && sim->fail_from == from && sim->fail_to == to) {
		sim->fail_armed = false;
		sim->state = sim->fail_leave;
		if (sim->fail_leave == XEVF_MIG_ERROR || sim->fail_leave == XEVF_MIG_RUNNING ||
		    sim->fail_leave == XEVF_MIG_STOP)
			end_session(sim);
		errno = sim->fail_errno;
		return -1;
	}
	snprintf(what, sizeof(what), "%s>%s", xevf_mig_state_name(from), xevf_mig_state_name(to));
	switch (to) {
	case XEVF_MIG_PRE_COPY:
	case XEVF_MIG_PRE_COPY_P2P:
	case XEVF_MIG_STOP_COPY:
		if (from == XEVF_MIG_PRE_COPY || from == XEVF_MIG_PRE_COPY_P2P) {
			/* the saving group is one session: moving inside it keeps the fd,
			 * and at STOP_COPY the rest of the stream follows on it */
			size_t rest = sim->stream_len - sim->precopy_len;
			if (to == XEVF_MIG_STOP_COPY && rest &&
			    pwrite(sim->data_fd, sim->stream + sim->precopy_len, rest, (off_t)sim->precopy_len) !=
				    (ssize_t)rest) {
				errno = EIO;
				return -1;
			}
			break;
		}
		if ((rc = build_stream(sim)) < 0 ||
		    (rc = open_session(sim, to == XEVF_MIG_STOP_COPY ? sim->stream_len : sim->precopy_len)) < 0) {
			end_session(sim);
			errno = -rc;
			return -1;
		}
		st->data_fd = rc;
		break;
	case XEVF_MIG_RESUMING:
		if ((rc = open_session(sim, 0)) < 0) {
			errno = -rc;
			return -1;
		}
		st->data_fd = rc;
		break;
	case XEVF_MIG_STOP:
		if (from == XEVF_MIG_RESUMING && (rc = take_resumed(sim)) < 0) {
			/* an inconsistent state: refuse it, the device is unusable until reset */
			end_session(sim);
			sim->state = XEVF_MIG_ERROR;
			errno = -rc;
			return -1;
		}
		end_session(sim);
		break;
	case XEVF_MIG_RUNNING:
		if (sim->has_loaded) {
			free(sim->content);
			sim->content = sim->loaded;
			sim->content_len = sim->loaded_len;
			sim->loaded = NULL;
			sim->has_loaded = false;
			persist(sim);
		}
		end_session(sim);
		break;
	default:
		end_session(sim);
		break;
	}
	trace_arc(sim, what);
	sim->state = to;
	return 0;
}

static int sim_ioctl(void *ctx, int fd, unsigned long request, void *arg)
{
	struct vfio_sim *sim = ctx;

	if (request == VFIO_MIG_GET_PRECOPY_INFO) {
		struct vfio_precopy_info *info = arg;
		off_t pos;
		sim->precopy_queries++;
		if (sim->data_fd < 0 || (sim->state != XEVF_MIG_PRE_COPY && sim->state != XEVF_MIG_PRE_COPY_P2P)) {
			errno = EINVAL;
			return -1;
		}
		pos = lseek(fd, 0, SEEK_CUR);
		info->initial_bytes = pos >= 0 && (size_t)pos < sim->precopy_len ? sim->precopy_len - (size_t)pos : 0;
		info->dirty_bytes = 0;
		return 0;
	}
	if (fd != sim->device_fd) {
		errno = EBADF;
		return -1;
	}
	if (request == VFIO_DEVICE_RESET) {
		if (sim->reset_errno) {
			errno = sim->reset_errno;
			sim->reset_errno = 0;
			return -1;
		}
		end_session(sim);
		free(sim->loaded);
		sim->loaded = NULL;
		sim->has_loaded = false;
		set_content(sim, NULL, 0); /* a reset loses the device's state */
		persist(sim);
		sim->state = XEVF_MIG_RUNNING;
		sim->resets++;
		trace_arc(sim, "RESET");
		return 0;
	}
	if (request != VFIO_DEVICE_FEATURE) {
		errno = ENOTTY;
		return -1;
	}
	struct vfio_device_feature *f = arg;
	uint32_t feature = f->flags & VFIO_DEVICE_FEATURE_MASK;
	if (!sim->flags) {
		errno = ENOTTY; /* vfio-pci without a migration driver */
		return -1;
	}
	if (feature == VFIO_DEVICE_FEATURE_MIGRATION && (f->flags & VFIO_DEVICE_FEATURE_GET)) {
		struct vfio_device_feature_migration mig = {.flags = sim->flags};
		if (f->argsz < sizeof(*f) + sizeof(mig)) {
			errno = EINVAL;
			return -1;
		}
		memcpy(f->data, &mig, sizeof(mig));
		return 0;
	}
	if (feature == VFIO_DEVICE_FEATURE_MIG_DATA_SIZE && (f->flags & VFIO_DEVICE_FEATURE_GET)) {
		/* what a STOP_COPY of the current state would produce */
		struct vfio_device_feature_mig_data_size size = {
			.stop_copy_length = sim->capacity ? sim->capacity : SIM_HDR + sim->content_len + SIM_TRAILER};
		if (f->argsz < sizeof(*f) + sizeof(size)) {
			errno = EINVAL;
			return -1;
		}
		memcpy(f->data, &size, sizeof(size));
		return 0;
	}
	if (feature == VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE) {
		struct vfio_device_feature_mig_state st;
		if (f->argsz < sizeof(*f) + sizeof(st)) {
			errno = EINVAL;
			return -1;
		}
		memcpy(&st, f->data, sizeof(st));
		if (f->flags & VFIO_DEVICE_FEATURE_GET) {
			st.device_state = sim->state;
			st.data_fd = -1;
			memcpy(f->data, &st, sizeof(st));
			return 0;
		}
		int rc = set_state(sim, &st);
		memcpy(f->data, &st, sizeof(st));
		return rc;
	}
	errno = ENOTTY;
	return -1;
}

int vfio_sim_new(const char *name, uint64_t flags, const void *content, size_t len,
		      const char *content_path, struct vfio_sim **out, struct xevf_err *err)
{
	struct vfio_sim *sim = calloc(1, sizeof(*sim));
	char *file_content = NULL;

	*out = NULL;
	if (!sim)
		return xevf_err_set(err, ENOMEM, "%s: out of memory", name);
	sim->device_fd = -1;
	sim->data_fd = -1;
	sim->flags = flags;
	sim->state = XEVF_MIG_RUNNING;
	sim->ops.ioctl = sim_ioctl;
	sim->ops.ctx = sim;
	sim->name = strdup(name);
	sim->content_path = xevf_strdup_or_null(content_path);
	sim->device_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!sim->name || (content_path && !sim->content_path) || sim->device_fd < 0) {
		vfio_sim_free(sim);
		return xevf_err_set(err, ENOMEM, "%s: cannot create the simulated VFIO device", name);
	}
	if (content_path && !content) {
		FILE *f = fopen(content_path, "re");
		if (f) {
			size_t cap = 0;
			len = 0;
			for (;;) {
				if (len == cap) {
					/* beyond the largest state: set_content refuses it */
					char *p = cap > SIM_MAX_CONTENT ? NULL : realloc(file_content, cap ? cap * 2 : 4096);
					if (!p)
						break;
					file_content = p;
					cap = cap ? cap * 2 : 4096;
				}
				size_t n = fread(file_content + len, 1, cap - len, f);
				if (n == 0)
					break;
				len += n;
			}
			fclose(f);
			content = file_content;
		}
	}
	if (set_content(sim, content, content ? len : 0) < 0) {
		free(file_content);
		vfio_sim_free(sim);
		return xevf_err_set(err, ENOMEM, "%s: out of memory", name);
	}
	free(file_content);
	*out = sim;
	return 0;
}

void vfio_sim_free(struct vfio_sim *sim)
{
	if (!sim)
		return;
	end_session(sim);
	if (sim->device_fd >= 0)
		close(sim->device_fd);
	free(sim->name);
	free(sim->content_path);
	free(sim->content);
	free(sim->loaded);
	free(sim->trace);
	free(sim);
}

const struct xevf_vfio_ops *vfio_sim_ops(struct vfio_sim *sim) { return &sim->ops; }
int vfio_sim_fd(const struct vfio_sim *sim) { return sim->device_fd; }
uint32_t vfio_sim_state(const struct vfio_sim *sim) { return sim->state; }
unsigned vfio_sim_resets(const struct vfio_sim *sim) { return sim->resets; }
unsigned vfio_sim_precopy_queries(const struct vfio_sim *sim) { return sim->precopy_queries; }
const char *vfio_sim_trace(const struct vfio_sim *sim) { return sim->trace ? sim->trace : ""; }

const unsigned char *vfio_sim_content(const struct vfio_sim *sim, size_t *len)
{
	*len = sim->content_len;
	return sim->content;
}

void vfio_sim_fail_arc(struct vfio_sim *sim, uint32_t from, uint32_t to, int errnum, uint32_t leave_in)
{
	sim->fail_armed = true;
	sim->fail_from = from;
	sim->fail_to = to;
	sim->fail_errno = errnum;
	sim->fail_leave = leave_in;
}

void vfio_sim_fail_reset(struct vfio_sim *sim, int errnum) { sim->reset_errno = errnum; }

void vfio_sim_set_capacity(struct vfio_sim *sim, uint64_t bytes) { sim->capacity = bytes; }

uint64_t vfio_sim_max_stream(void) { return SIM_HDR + SIM_MAX_CONTENT + SIM_TRAILER; }

void vfio_sim_set_kind(struct vfio_sim *sim, uint32_t device_id, uint32_t revision)
{
	sim->device_id = device_id;
	sim->revision = revision;
}

int vfio_sim_flags_parse(const char *name, uint64_t *flags)
{
	static const struct {
		const char *name;
		uint64_t flags;
	} kinds[] = {
		{"xe", XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_P2P},
		{"pre-copy", XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_PRE_COPY},
		{"p2p-pre-copy", XEVF_MIG_F_STOP_COPY | XEVF_MIG_F_P2P | XEVF_MIG_F_PRE_COPY},
		{"stop-copy", XEVF_MIG_F_STOP_COPY},
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i].name, name) == 0) {
			*flags = kinds[i].flags;
			return 0;
		}
	return -EINVAL;
}
