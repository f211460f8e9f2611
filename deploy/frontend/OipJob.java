package torchservemodels.frontend;

import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ModelInferResponse;
import org.pytorch.serve.job.Job;
import org.pytorch.serve.util.messages.RequestInput;
import org.pytorch.serve.util.messages.WorkerCommands;

/**
 * One gRPC ModelInfer request on its way through TorchServe's queue and workers, like GRPCJob but
 * answering as the protocol does: the handler's v2 JSON becomes raw_output_contents, and a request
 * the handler refused (its own 4xx) becomes a gRPC error carrying the handler's message.
 */
final class OipJob extends Job {

    private final StreamObserver<ModelInferResponse> observer;

    OipJob(String modelName, String version, RequestInput input, StreamObserver<ModelInferResponse> observer) {
        super(modelName, version, WorkerCommands.OIPPREDICT, input);
        this.observer = observer;
    }

    @Override
    public void response(
            byte[] body, CharSequence contentType, int statusCode, String statusPhrase, Map<String, String> headers) {
        if (!isOpen()) {
            return;
        }
        if (statusCode >= 400) {
            sendError(statusCode, OpenInference.errorMessage(body, statusPhrase));
            return;
        }
        ModelInferResponse response;
        try {
            response = OpenInference.responseProto(body);
        } catch (RuntimeException e) {
            sendError(500, "the model's answer is not an Open Inference Protocol response: " + e);
            return;
        }
        observer.onNext(response);
        observer.onCompleted();
    }

    @Override
    public void sendError(int status, String error) {
        if (isOpen()) {
            observer.onError(OpenInference.grpcStatus(status).withDescription(error).asRuntimeException());
        }
    }

    /** False once the client cancelled the call (an answer then would throw). */
    @Override
    public boolean isOpen() {
        return !(observer instanceof ServerCallStreamObserver)
                || !((ServerCallStreamObserver<ModelInferResponse>) observer).isCancelled();
    }
}
