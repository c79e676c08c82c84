#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
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

int http_get(const struct http_request *req, char **body, char **error)
{
	CURL *curl;
	CURLcode rc;
	struct sink s = {0};
	long code = -1;
	struct curl_slist *headers = NULL;
	char *auth = NULL;

	*body = NULL;
	*error = NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(curl = curl_easy_init()))
		return agent_fail(error, ENOMEM, "libcurl could not start");
	if (req->unix_socket)
		curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
	if (req->bearer_token && asprintf(&auth, "Authorization: Bearer %s", req->bearer_token) >= 0)
		headers = curl_slist_append(headers, auth);
	headers = curl_slist_append(headers, "Accept: application/json");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	if (req->ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(curl, CURLOPT_URL, req->url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	else
		agent_fail(error, s.too_big ? EFBIG : EIO, "%s: %s", req->unix_socket ? req->unix_socket : req->url,
			   s.too_big ? "the answer is too large" : curl_easy_strerror(rc));
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	curl_slist_free_all(headers);
	if (auth) {
		memset(auth, 0, strlen(auth)); /* a credential */
		free(auth);
	}
	if (rc != CURLE_OK) {
		free(s.buf);
		return s.too_big ? -EFBIG : -EIO;
	}
	*body = s.buf ? s.buf : strdup("");
	return (int)code;
}

int http_get_unix(const char *socket_path, const char *path, char **body, char **error)
{
	char *url = NULL;
	int code;

	if (asprintf(&url, "http://localhost%s", path) < 0)
		url = NULL;
	struct http_request req = {.url = url ? url : "http://localhost/", .unix_socket = socket_path};
	code = http_get(&req, body, error);
	free(url);
	return code;
}
