#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"

struct sink {
	char *buf;
	size_t len;
	bool too_big;
};

#define STATUS_MAX_BYTES ((size_t)8 * 1024 * 1024)

static size_t collect(char *data, size_t size, size_t n, void *userdata)
{
	struct sink *s = userdata;
	size_t add = size * n;
	char *grown;

	if (s->len + add > STATUS_MAX_BYTES) {
		s->too_big = true;
		return 0;
	}
	grown = realloc(s->buf, s->len + add + 1);
	if (!grown)
		return 0;
	memcpy(grown + s->len, data, add);
	s->len += add;
	grown[s->len] = '\0';
	s->buf = grown;
	return add;
}

/* The easy handle for req, with its headers in *headers and the
 * Authorization header in *auth (both the caller frees: auth_free). */
static CURL *easy_for(const struct http_request *req, struct curl_slist **headers, char **auth)
{
	CURL *curl = curl_easy_init();

	*headers = NULL;
	*auth = NULL;
	if (!curl)
		return NULL;
	if (req->unix_socket)
		curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
	if (req->bearer_token && asprintf(auth, "Authorization: Bearer %s", req->bearer_token) >= 0)
		*headers = curl_slist_append(*headers, *auth);
	*headers = curl_slist_append(*headers, "Accept: application/json");
	if (req->post_json) {
		*headers = curl_slist_append(*headers, "Content-Type: application/json");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->post_json);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *headers);
	if (req->ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(curl, CURLOPT_URL, req->url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	return curl;
}

static void auth_free(char *auth)
{
	if (auth) {
		memset(auth, 0, strlen(auth)); /* a credential */
		free(auth);
	}
}

int http_fetch(const struct http_request *req, char **body, char **error)
{
	CURL *curl;
	CURLcode rc;
	struct sink s = {0};
	long code = -1;
	struct curl_slist *headers = NULL;
	char *auth = NULL;

	*body = NULL;
	*error = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(curl = easy_for(req, &headers, &auth)))
		return agent_fail(error, ENOMEM, "libcurl could not start");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	else
		agent_fail(error, s.too_big ? EFBIG : EIO, "%s: %s", req->unix_socket ? req->unix_socket : req->url,
			   s.too_big ? "the answer is too large" : curl_easy_strerror(rc));
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	curl_slist_free_all(headers);
	auth_free(auth);
	if (rc != CURLE_OK) {
		free(s.buf);
		return s.too_big ? -EFBIG : -EIO;
	}
	*body = s.buf ? s.buf : strdup("");
	return (int)code;
}

struct http_stopper {
	pthread_mutex_t lock;
	CURLM *multi;   /* the stream in progress, or NULL */
	bool stopped;
};

struct http_stopper *http_stopper_new(void)
{
	struct http_stopper *s = calloc(1, sizeof(*s));

	if (s)
		pthread_mutex_init(&s->lock, NULL);
	return s;
}

void http_stopper_stop(struct http_stopper *s)
{
	pthread_mutex_lock(&s->lock);
	s->stopped = true;
	if (s->multi)
		curl_multi_wakeup(s->multi);
	pthread_mutex_unlock(&s->lock);
}

bool http_stopper_stopped(struct http_stopper *s)
{
	bool stopped;

	pthread_mutex_lock(&s->lock);
	stopped = s->stopped;
	pthread_mutex_unlock(&s->lock);
	return stopped;
}

void http_stopper_free(struct http_stopper *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct lines {
	struct sink sink;
	http_line_fn on_line;
	void *ctx;
	bool refused;   /* on_line said stop */
};

static size_t split_lines(char *data, size_t size, size_t n, void *userdata)
{
	struct lines *l = userdata;
	size_t add = size * n;
	char *nl;

	if (collect(data, size, n, &l->sink) != add)
		return 0;
	while (l->sink.buf && (nl = memchr(l->sink.buf, '\n', l->sink.len))) {
		size_t line = (size_t)(nl - l->sink.buf);
		*nl = '\0';
		if (line && l->on_line(l->ctx, l->sink.buf, line) != 0) {
			l->refused = true;
			return 0;
		}
		l->sink.len -= line + 1;
		memmove(l->sink.buf, nl + 1, l->sink.len + 1);
	}
	return add;
}

int http_stream_lines(const struct http_request *req, struct http_stopper *stop, http_line_fn on_line, void *ctx,
		      char **error)
{
	struct lines l = {.on_line = on_line, .ctx = ctx};
	struct curl_slist *headers = NULL;
	char *auth = NULL;
	CURL *curl;
	CURLM *multi;
	CURLMsg *msg;
	CURLcode result = CURLE_OK;
	long code = -1;
	int running = 1, left;

	*error = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return agent_fail(error, ENOMEM, "libcurl could not start");
	if (!(curl = easy_for(req, &headers, &auth)) || !(multi = curl_multi_init())) {
		if (curl)
			curl_easy_cleanup(curl);
		curl_slist_free_all(headers);
		auth_free(auth);
		curl_global_cleanup();
		return agent_fail(error, ENOMEM, "libcurl could not start");
	}
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, split_lines);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &l);
	curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
	/* a stream is quiet for long: the kernel tells a peer that went away */
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(curl, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_multi_add_handle(multi, curl);
	pthread_mutex_lock(&stop->lock);
	stop->multi = multi;
	pthread_mutex_unlock(&stop->lock);
	while (running && !http_stopper_stopped(stop)) {
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			break;
		if (running)
			/* sleeps until data comes, curl's own timer, or a stop */
			(void)curl_multi_poll(multi, NULL, 0, 3600 * 1000, NULL);
	}
	pthread_mutex_lock(&stop->lock);
	stop->multi = NULL;
	pthread_mutex_unlock(&stop->lock);
	while ((msg = curl_multi_info_read(multi, &left)))
		if (msg->msg == CURLMSG_DONE)
			result = msg->data.result;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(multi, curl);
	curl_multi_cleanup(multi);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	curl_slist_free_all(headers);
	auth_free(auth);
	free(l.sink.buf);
	if (l.refused)
		return agent_fail(error, ECANCELED, "%s: the stream was ended by its reader", req->url);
	if (l.sink.too_big)
		return agent_fail(error, EFBIG, "%s: a line of the stream is too large", req->url);
	if (result != CURLE_OK && result != CURLE_HTTP_RETURNED_ERROR)
		return agent_fail(error, EIO, "%s: %s", req->url, curl_easy_strerror(result));
	return (int)code;
}

int http_get_unix(const char *socket_path, const char *path, char **body, char **error)
{
	char *url = NULL;
	int code;

	if (asprintf(&url, "http://localhost%s", path) < 0)
		url = NULL;
	struct http_request req = {.url = url ? url : "http://localhost/", .unix_socket = socket_path};
	code = http_fetch(&req, body, error);
	free(url);
	return code;
}
