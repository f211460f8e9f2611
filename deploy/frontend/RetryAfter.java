package torchservemodels.frontend;

import io.netty.handler.codec.http.HttpResponse;

/**
 * Every 503 TorchServe sends (a model's queue full, no worker ready yet) says when to come back:
 * clients that honour Retry-After pause instead of resending at once, which on a busy host is
 * what keeps refusals from crowding out the requests being served.
 */
public final class RetryAfter {

    static final String HEADER = "Retry-After";
    static final String SECONDS = "1";
    private static final int HTTP_UNAVAILABLE = 503;

    private RetryAfter() {}

    /** Called by NettyUtils.sendHttpResponse (rewritten by PatchFrontend) before the answer leaves. */
    public static void onResponse(HttpResponse response) {
        if (response.status().code() == HTTP_UNAVAILABLE && !response.headers().contains(HEADER)) {
            response.headers().set(HEADER, SECONDS);
        }
    }
}
