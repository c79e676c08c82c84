#include "state_stream.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

int state_stream_init(struct state_stream *s)
{
	memset(s, 0, sizeof(*s));
	s->sha = EVP_MD_CTX_new();
	if (!s->sha || !EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(s->sha);
		s->sha = NULL;
		return -ENOMEM;
	}
	return 0;
}

void state_stream_free(struct state_stream *s)
{
	EVP_MD_CTX_free(s->sha);
	s->sha = NULL;
}

void state_stream_add(struct state_stream *s, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(s->sha, data, len);
	s->offset += len;
}

void state_stream_finish(struct state_stream *s)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	EVP_DigestFinal_ex(s->sha, d, &n);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(s->digest + (size_t)2 * i, 3, "%02x", d[i]);
	s->digest[64] = 0;
}

int state_stream_accept(struct state_stream *s, const Xevf__Migration__V1__StateChunk *c, size_t cap,
			const char *id, struct xevf_err *err)
{
	if (s->done)
		return xevf_err_set(err, EALREADY, "migration %s: data after the final chunk", id);
	if (c->offset != s->offset || c->data.len > cap)
		return xevf_err_set(err, EPROTO, "migration %s: chunk at offset %llu, expected %llu%s", id,
				    (unsigned long long)c->offset, (unsigned long long)s->offset,
				    c->data.len > cap ? " (chunk too large)" : " (lost or reordered data)");
	state_stream_add(s, c->data.data, c->data.len);
	if (!c->last)
		return 0;
	s->done = true;
	state_stream_finish(s);
	if (c->total_bytes != s->offset)
		return xevf_err_set(err, EBADMSG, "migration %s: %llu bytes received, the source sent %llu", id,
				    (unsigned long long)s->offset, (unsigned long long)c->total_bytes);
	if (!c->sha256 || strcmp(c->sha256, s->digest) != 0)
		return xevf_err_set(err, EBADMSG,
				    "migration %s: SHA-256 of the state stream is %s, the source's is %.64s: corrupted in "
				    "transit; nothing is resumed", id, s->digest, c->sha256 ? c->sha256 : "");
	return 0;
}
