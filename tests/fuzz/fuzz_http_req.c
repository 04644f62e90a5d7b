/* Fuzz target: the streaming server's HTTP/1.1 request-head parser
 * (agent/stream), fed in two parts split where the first byte says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/strm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct strm_http_req *req = calloc(1, sizeof(*req));

    if (req == NULL || size < 1) {
        free(req);
        return 0;
    }
    size_t cut = data[0] % size;
    int rc = strm_http_req_parse(req, data + 1, cut > 0 ? cut - 1 : 0);
    if (rc == 0)
        rc = strm_http_req_parse(req, data + (cut > 0 ? cut : 1), size - (cut > 0 ? cut : 1));
    if (rc > 0) {
        (void)strm_http_header(req, "upgrade");
        (void)strm_http_header_has(req, "connection", "upgrade");
        for (size_t i = 0; i < req->header_count; i++)
            if (strlen(req->headers[i].name) == 0)
                abort();
    }
    free(req);
    return 0;
}
