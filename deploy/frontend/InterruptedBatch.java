package torchservemodels.frontend;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.pytorch.serve.job.Job;
import org.pytorch.serve.wlm.Model;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What TorchServe 0.12 forgot: jobs a worker thread had taken from its model's queue while it was
 * still collecting a batch (waiting up to maxBatchDelay) when the thread was interrupted, because
 * its worker process died or the worker was scaled down. Unpatched, the thread's clean-up clears
 * them without an answer and their clients wait for their own timeout. None of them reached a
 * worker, so none can have caused the death: they go back to the head of the queue, in their
 * order, for the next worker (or, if the queue has filled meanwhile, get a 503 at once).
 */
public final class InterruptedBatch {

    private static final Logger logger = LoggerFactory.getLogger(InterruptedBatch.class);
    private static final int HTTP_UNAVAILABLE = 503;

    private InterruptedBatch() {}

    /** Called by Model.pollBatch (rewritten by PatchFrontend) on InterruptedException. */
    public static void requeue(Model model, Map<String, Job> taken) {
        if (taken == null || taken.isEmpty()) {
            return;
        }
        List<Job> jobs = new ArrayList<>(taken.values());
        Collections.reverse(jobs); // addFirst one by one: the last added is served first
        for (Job job : jobs) {
            try {
                model.addFirst(job);
            } catch (IllegalStateException full) { // the queue holds job_queue_size jobs at most
                job.sendError(HTTP_UNAVAILABLE, "the worker died and the model's queue is full: retry");
            }
        }
        logger.warn("{}: {} job(s) of a batch still being collected when its worker thread was "
                    + "interrupted went back to the queue", model.getModelName(), jobs.size());
        taken.clear();
    }
}
