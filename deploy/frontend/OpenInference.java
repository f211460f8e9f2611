package torchservemodels.frontend;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.ByteString;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.pytorch.serve.ModelServer;
import org.pytorch.serve.archive.model.ModelNotFoundException;
import org.pytorch.serve.archive.model.ModelVersionNotFoundException;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.InferParameter;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ModelInferRequest;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ModelInferResponse;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ModelMetadataRequest;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ModelMetadataResponse;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ServerReadyRequest;
import org.pytorch.serve.grpc.openinference.OpenInferenceGrpc.ServerReadyResponse;
import org.pytorch.serve.grpcimpl.GRPCInterceptor;
import org.pytorch.serve.grpcimpl.GRPCServiceFactory;
import org.pytorch.serve.grpcimpl.OpenInferenceProtocolImpl;
import org.pytorch.serve.http.api.rest.OpenInferenceProtocolRequestHandler;
import org.pytorch.serve.job.GRPCJob;
import org.pytorch.serve.util.ConfigManager;
import org.pytorch.serve.util.ConnectorType;
import org.pytorch.serve.util.NettyUtils;
import org.pytorch.serve.util.messages.InputParameter;
import org.pytorch.serve.util.messages.RequestInput;
import org.pytorch.serve.util.messages.WorkerCommands;
import org.pytorch.serve.wlm.Model;
import org.pytorch.serve.wlm.ModelManager;
import org.pytorch.serve.wlm.WorkerState;
import org.pytorch.serve.wlm.WorkerThread;

/**
 * The Open Inference Protocol (KServe v2) as clients no one here wrote expect it, over TorchServe
 * 0.12's own implementation (PatchFrontend routes the methods named below here):
 *
 * <ul>
 *   <li>gRPC under the protocol's standard service name {@code inference.GRPCInferenceService}
 *       (what tritonclient and KServe's SDK call), besides TorchServe's own package name, on the
 *       same port and behind the same token check ({@code ModelServer.startGRPCServer}).
 *   <li>ModelInfer reads {@code raw_input_contents} (tritonclient's only form) and forwards the
 *       request's parameters; its answer comes back in {@code raw_output_contents}; a request the
 *       handler refused gets a gRPC error with the handler's message ({@link OipJob}).
 *   <li>Readiness tells the truth: ready means every model has a worker with its model loaded
 *       (TorchServe answers true always), over gRPC and {@code GET /v2/health/ready}.
 *   <li>Model metadata describes the real tensors: the model archive's {@code oip_metadata.json},
 *       over gRPC and {@code GET /v2/models/<name>} (which TorchServe does not route), and
 *       {@code GET /v2/models/<name>/ready}.
 *   <li>TorchServe's own gRPC Predictions: a request the handler refused gets a gRPC error, not an
 *       OK whose prediction bytes are the error's JSON ({@code GRPCJob.response}).
 * </ul>
 *
 * The worker sees every v2 request as the same JSON as REST's {@code /v2/models/<m>/infer} body,
 * BYTES elements as base64 marked by the input parameter {@code content_type: base64}.
 */
public final class OpenInference {

    static final String STANDARD_SERVICE = "inference.GRPCInferenceService";
    static final String METADATA_FILE = "oip_metadata.json";
    static final String BASE64 = "base64";

    private OpenInference() {}

    // --- gRPC server -----------------------------------------------------------------------

    /** Replaces ModelServer.startGRPCServer: 0.12.0's builder, plus the OIP service's standard name. */
    public static Server startGrpcServer(ModelServer server, ConnectorType connectorType) throws IOException {
        ConfigManager config = ConfigManager.getInstance();
        NettyServerBuilder builder =
                NettyServerBuilder.forAddress(
                                new InetSocketAddress(
                                        config.getGRPCAddress(connectorType), config.getGRPCPort(connectorType)))
                        .maxConnectionAge(config.getGRPCMaxConnectionAge(connectorType), TimeUnit.MILLISECONDS)
                        .maxConnectionAgeGrace(
                                config.getGRPCMaxConnectionAgeGrace(connectorType), TimeUnit.MILLISECONDS)
                        .maxInboundMessageSize(config.getMaxRequestSize());
        builder.addService(
                ServerInterceptors.intercept(
                        GRPCServiceFactory.getgRPCService(connectorType), new GRPCInterceptor(connectorType)));
        if (connectorType == ConnectorType.INFERENCE_CONNECTOR && config.isOpenInferenceProtocol()) {
            ServerServiceDefinition oip =
                    GRPCServiceFactory.getgRPCService(ConnectorType.OPEN_INFERENCE_CONNECTOR).bindService();
            builder.addService(ServerInterceptors.intercept(oip, new GRPCInterceptor(connectorType)));
            builder.addService(
                    ServerInterceptors.intercept(renamed(oip, STANDARD_SERVICE), new GRPCInterceptor(connectorType)));
        }
        if (config.isGRPCSSLEnabled()) {
            builder.useTransportSecurity(new File(config.getCertificateFile()), new File(config.getPrivateKeyFile()));
        }
        Server grpc = builder.build();
        grpc.start();
        return grpc;
    }

    static ServerServiceDefinition renamed(ServerServiceDefinition service, String name) {
        ServerServiceDefinition.Builder builder = ServerServiceDefinition.builder(name);
        for (ServerMethodDefinition<?, ?> method : service.getMethods()) {
            addRenamed(builder, method, name);
        }
        return builder.build();
    }

    private static <Q, R> void addRenamed(
            ServerServiceDefinition.Builder builder, ServerMethodDefinition<Q, R> method, String service) {
        MethodDescriptor<Q, R> descriptor = method.getMethodDescriptor();
        String bare = descriptor.getFullMethodName().substring(descriptor.getFullMethodName().indexOf('/') + 1);
        builder.addMethod(
                descriptor.toBuilder()
                        .setFullMethodName(MethodDescriptor.generateFullMethodName(service, bare))
                        .setSchemaDescriptor(null)
                        .build(),
                method.getServerCallHandler());
    }

    // --- gRPC methods (OpenInferenceProtocolImpl; each returns true: the call is answered) ----

    public static boolean modelInfer(
            OpenInferenceProtocolImpl self, ModelInferRequest request, StreamObserver<ModelInferResponse> observer) {
        String modelName = request.getModelName();
        if (modelName.isEmpty()) {
            observer.onError(Status.INVALID_ARGUMENT.withDescription("model_name is required").asRuntimeException());
            return true;
        }
        String version = request.getModelVersion().isEmpty() ? null : request.getModelVersion();
        byte[] body;
        try {
            body = requestJson(request).toString().getBytes(StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            observer.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
            return true;
        }
        RequestInput input = new RequestInput(UUID.randomUUID().toString());
        input.addParameter(new InputParameter("body", body, "application/json"));
        try {
            if (!ModelManager.getInstance().addJob(new OipJob(modelName, version, input, observer))) {
                observer.onError(
                        Status.UNAVAILABLE.withDescription(
                                        "model " + modelName + " cannot take the request now: its queue is full or"
                                                + " it has no worker")
                                .asRuntimeException());
            }
        } catch (ModelNotFoundException | ModelVersionNotFoundException e) {
            observer.onError(Status.NOT_FOUND.withDescription(e.getMessage()).asRuntimeException());
        }
        return true;
    }

    public static boolean serverReady(
            OpenInferenceProtocolImpl self, ServerReadyRequest request, StreamObserver<ServerReadyResponse> observer) {
        observer.onNext(ServerReadyResponse.newBuilder().setReady(serverIsReady()).build());
        observer.onCompleted();
        return true;
    }

    public static boolean modelMetadata(
            OpenInferenceProtocolImpl self,
            ModelMetadataRequest request,
            StreamObserver<ModelMetadataResponse> observer) {
        JsonObject metadata;
        try {
            metadata = metadata(request.getName(), request.getVersion());
        } catch (ModelNotFoundException | ModelVersionNotFoundException e) {
            observer.onError(Status.NOT_FOUND.withDescription(e.getMessage()).asRuntimeException());
            return true;
        }
        ModelMetadataResponse.Builder response =
                ModelMetadataResponse.newBuilder()
                        .setName(metadata.get("name").getAsString())
                        .setPlatform(metadata.get("platform").getAsString());
        metadata.getAsJsonArray("versions").forEach(version -> response.addVersions(version.getAsString()));
        metadata.getAsJsonArray("inputs").forEach(tensor -> response.addInputs(tensorMetadata(tensor)));
        metadata.getAsJsonArray("outputs").forEach(tensor -> response.addOutputs(tensorMetadata(tensor)));
        observer.onNext(response.build());
        observer.onCompleted();
        return true;
    }

    private static ModelMetadataResponse.TensorMetadata tensorMetadata(JsonElement element) {
        JsonObject tensor = element.getAsJsonObject();
        ModelMetadataResponse.TensorMetadata.Builder builder =
                ModelMetadataResponse.TensorMetadata.newBuilder()
                        .setName(tensor.get("name").getAsString())
                        .setDatatype(tensor.get("datatype").getAsString());
        tensor.getAsJsonArray("shape").forEach(size -> builder.addShape(size.getAsLong()));
        return builder.build();
    }

    // --- REST (OpenInferenceProtocolRequestHandler.handleRequest; false: TorchServe's own) -----

    public static boolean handleRest(
            OpenInferenceProtocolRequestHandler self,
            ChannelHandlerContext ctx,
            FullHttpRequest request,
            io.netty.handler.codec.http.QueryStringDecoder decoder,
            String[] segments) {
        if (!HttpMethod.GET.equals(request.method()) || segments.length < 4 || !"v2".equals(segments[1])) {
            return false;
        }
        if (segments.length == 4 && "health".equals(segments[2]) && "ready".equals(segments[3])) {
            boolean ready = serverIsReady();
            JsonObject answer = new JsonObject();
            answer.addProperty("ready", ready);
            NettyUtils.sendJsonResponse(ctx, answer, ready ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE);
            return true;
        }
        if (!"models".equals(segments[2]) || segments.length > 5 || (segments.length == 5 && !"ready".equals(segments[4]))) {
            return false;
        }
        try {
            if (segments.length == 4) {
                NettyUtils.sendJsonResponse(ctx, metadata(segments[3], null));
            } else {
                Model model = ModelManager.getInstance().getModel(segments[3], null);
                if (model == null) {
                    throw new ModelNotFoundException("Model not found: " + segments[3]);
                }
                boolean ready = modelIsReady(model);
                JsonObject answer = new JsonObject();
                answer.addProperty("name", segments[3]);
                answer.addProperty("ready", ready);
                NettyUtils.sendJsonResponse(ctx, answer, ready ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE);
            }
        } catch (ModelNotFoundException | ModelVersionNotFoundException e) {
            JsonObject error = new JsonObject();
            error.addProperty("error", e.getMessage());
            NettyUtils.sendJsonResponse(ctx, error, HttpResponseStatus.NOT_FOUND);
        }
        return true;
    }

    // --- TorchServe's own gRPC Predictions (GRPCJob.response; false: TorchServe's own) ---------

    public static boolean refusedPrediction(
            GRPCJob job, byte[] body, CharSequence contentType, int statusCode, String phrase, Map<String, String> headers) {
        if (statusCode < 400 || job.getCmd() != WorkerCommands.PREDICT) {
            return false;
        }
        // GRPCJob.sendError maps the HTTP status as TorchServe does (400 INVALID_ARGUMENT, 413
        // RESOURCE_EXHAUSTED, ...); 415 has no entry there and would be INTERNAL.
        job.sendError(statusCode == 415 ? 400 : statusCode, errorMessage(body, phrase));
        return true;
    }

    // --- shared --------------------------------------------------------------------------------

    static boolean serverIsReady() {
        Map<String, Model> models = ModelManager.getInstance().getDefaultModels();
        return !models.isEmpty()
                && models.values().stream().allMatch(OpenInference::modelIsReady);
    }

    /** As deploy/readiness.py: a worker READY (its model loaded), not TorchServe's "healthy". */
    static boolean modelIsReady(Model model) {
        List<WorkerThread> workers = ModelManager.getInstance().getWorkers(model.getModelVersionName());
        return workers != null
                && workers.stream().anyMatch(worker -> worker.getState() == WorkerState.WORKER_MODEL_LOADED);
    }

    /** {name, versions, platform, inputs, outputs} from the archive's oip_metadata.json. */
    static JsonObject metadata(String name, String version)
            throws ModelNotFoundException, ModelVersionNotFoundException {
        ModelManager models = ModelManager.getInstance();
        Model model = models.getModel(name, version == null || version.isEmpty() ? null : version);
        if (model == null) {
            throw new ModelNotFoundException("Model not found: " + name);
        }
        JsonObject metadata;
        try {
            File file = new File(model.getModelDir(), METADATA_FILE);
            metadata = JsonParser.parseString(new String(Files.readAllBytes(file.toPath()), StandardCharsets.UTF_8))
                    .getAsJsonObject();
        } catch (IOException | RuntimeException e) {
            metadata = new JsonObject(); // an archive without the file: no tensors described
            metadata.add("inputs", new JsonArray());
            metadata.add("outputs", new JsonArray());
        }
        JsonArray versions = new JsonArray();
        models.getAllModelVersions(name).forEach(entry -> versions.add(entry.getKey()));
        JsonObject answer = new JsonObject();
        answer.addProperty("name", name);
        answer.add("versions", versions);
        answer.addProperty("platform", metadata.has("platform") ? metadata.get("platform").getAsString() : "");
        answer.add("inputs", metadata.get("inputs"));
        answer.add("outputs", metadata.get("outputs"));
        return answer;
    }

    static String errorMessage(byte[] body, String phrase) {
        String text = new String(body, StandardCharsets.UTF_8);
        try {
            JsonObject error = JsonParser.parseString(text).getAsJsonObject();
            for (String key : new String[] {"error", "message"}) {
                if (error.has(key)) {
                    return error.get(key).getAsString();
                }
            }
        } catch (RuntimeException notJson) {
            // the body itself is the message
        }
        return text.isEmpty() ? phrase : text;
    }

    /** A handler's HTTP status as a gRPC status. */
    static Status grpcStatus(int httpStatus) {
        switch (httpStatus) {
            case 400:
            case 415:
            case 422:
                return Status.INVALID_ARGUMENT;
            case 404:
                return Status.NOT_FOUND;
            case 413:
            case 429:
            case 507:
                return Status.RESOURCE_EXHAUSTED;
            case 503:
                return Status.UNAVAILABLE;
            case 504:
                return Status.DEADLINE_EXCEEDED;
            default:
                return httpStatus >= 400 && httpStatus < 500 ? Status.INVALID_ARGUMENT : Status.INTERNAL;
        }
    }

    // --- ModelInferRequest -> the JSON the handler reads ----------------------------------------

    static JsonObject requestJson(ModelInferRequest request) {
        JsonObject json = new JsonObject();
        json.addProperty("id", request.getId());
        json.addProperty("model_name", request.getModelName());
        json.add("parameters", parameters(request.getParametersMap()));
        int raw = request.getRawInputContentsCount();
        if (raw != 0 && raw != request.getInputsCount()) {
            throw new IllegalArgumentException(
                    raw + " raw_input_contents for " + request.getInputsCount() + " inputs: give one per input or none");
        }
        JsonArray inputs = new JsonArray();
        for (int index = 0; index < request.getInputsCount(); index++) {
            ModelInferRequest.InferInputTensor tensor = request.getInputs(index);
            JsonObject input = new JsonObject();
            input.addProperty("name", tensor.getName());
            input.addProperty("datatype", tensor.getDatatype());
            JsonArray shape = new JsonArray();
            tensor.getShapeList().forEach(shape::add);
            input.add("shape", shape);
            JsonObject inputParameters = parameters(tensor.getParametersMap());
            if ("BYTES".equals(tensor.getDatatype())) {
                inputParameters.addProperty("content_type", BASE64);
            }
            input.add("parameters", inputParameters);
            input.add("data", raw != 0 ? rawData(tensor.getDatatype(), request.getRawInputContents(index))
                                       : contentsData(tensor));
            inputs.add(input);
        }
        json.add("inputs", inputs);
        JsonArray outputs = new JsonArray();
        for (ModelInferRequest.InferRequestedOutputTensor output : request.getOutputsList()) {
            JsonObject named = new JsonObject();
            named.addProperty("name", output.getName());
            outputs.add(named);
        }
        if (outputs.size() > 0) {
            json.add("outputs", outputs);
        }
        return json;
    }

    static JsonObject parameters(Map<String, InferParameter> parameters) {
        JsonObject json = new JsonObject();
        parameters.forEach(
                (name, parameter) -> {
                    switch (parameter.getParameterChoiceCase()) {
                        case BOOL_PARAM:
                            json.addProperty(name, parameter.getBoolParam());
                            break;
                        case INT64_PARAM:
                            json.addProperty(name, parameter.getInt64Param());
                            break;
                        case STRING_PARAM:
                            json.addProperty(name, parameter.getStringParam());
                            break;
                        default: // a kind 0.12's proto does not know (Triton's double, uint64)
                            throw new IllegalArgumentException("parameter " + name + " has a type this server does not read");
                    }
                });
        return json;
    }

    static JsonArray contentsData(ModelInferRequest.InferInputTensor tensor) {
        JsonArray data = new JsonArray();
        switch (tensor.getDatatype()) {
            case "BYTES":
                tensor.getContents().getBytesContentsList().forEach(bytes -> data.add(base64(bytes.toByteArray())));
                break;
            case "BOOL":
                tensor.getContents().getBoolContentsList().forEach(data::add);
                break;
            case "INT8":
            case "INT16":
            case "INT32":
                tensor.getContents().getIntContentsList().forEach(data::add);
                break;
            case "INT64":
                tensor.getContents().getInt64ContentsList().forEach(data::add);
                break;
            case "UINT8":
            case "UINT16":
            case "UINT32":
                tensor.getContents().getUintContentsList().forEach(data::add);
                break;
            case "UINT64":
                tensor.getContents().getUint64ContentsList().forEach(data::add);
                break;
            case "FP32":
                tensor.getContents().getFp32ContentsList().forEach(data::add);
                break;
            case "FP64":
                tensor.getContents().getFp64ContentsList().forEach(data::add);
                break;
            default:
                throw new IllegalArgumentException("input " + tensor.getName() + ": datatype " + tensor.getDatatype()
                                                   + " is not supported");
        }
        return data;
    }

    /** The protocol's raw form: little-endian values; BYTES as a 4-byte length then the bytes, each. */
    static JsonArray rawData(String datatype, ByteString raw) {
        ByteBuffer buffer = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        JsonArray data = new JsonArray();
        while (buffer.hasRemaining()) {
            switch (datatype) {
                case "BYTES":
                    if (buffer.remaining() < 4) {
                        throw new IllegalArgumentException("raw BYTES input ends inside an element's length");
                    }
                    int length = buffer.getInt();
                    if (length < 0 || length > buffer.remaining()) {
                        throw new IllegalArgumentException("raw BYTES element of " + length + " bytes overruns the input");
                    }
                    byte[] element = new byte[length];
                    buffer.get(element);
                    data.add(base64(element));
                    break;
                case "BOOL":
                    data.add(buffer.get() != 0);
                    break;
                case "INT8":
                    data.add(buffer.get());
                    break;
                case "UINT8":
                    data.add(buffer.get() & 0xff);
                    break;
                case "INT16":
                    data.add(buffer.getShort());
                    break;
                case "INT32":
                    data.add(buffer.getInt());
                    break;
                case "INT64":
                    data.add(buffer.getLong());
                    break;
                case "FP32":
                    data.add(buffer.getFloat());
                    break;
                case "FP64":
                    data.add(buffer.getDouble());
                    break;
                default:
                    throw new IllegalArgumentException("raw input of datatype " + datatype + " is not supported");
            }
        }
        return data;
    }

    private static String base64(byte[] bytes) {
        return Base64.getEncoder().encodeToString(bytes);
    }

    // --- the handler's JSON answer -> ModelInferResponse ------------------------------------------

    static ModelInferResponse responseProto(byte[] body) {
        JsonObject json = JsonParser.parseString(new String(body, StandardCharsets.UTF_8)).getAsJsonObject();
        ModelInferResponse.Builder response =
                ModelInferResponse.newBuilder()
                        .setModelName(string(json, "model_name"))
                        .setModelVersion(string(json, "model_version"))
                        .setId(string(json, "id"));
        for (JsonElement element : json.getAsJsonArray("outputs")) {
            JsonObject output = element.getAsJsonObject();
            String datatype = output.get("datatype").getAsString();
            ModelInferResponse.InferOutputTensor.Builder tensor =
                    ModelInferResponse.InferOutputTensor.newBuilder()
                            .setName(output.get("name").getAsString())
                            .setDatatype(datatype);
            output.getAsJsonArray("shape").forEach(size -> tensor.addShape(size.getAsLong()));
            response.addOutputs(tensor);
            response.addRawOutputContents(raw(datatype, flatten(output.get("data"), new ArrayList<>())));
        }
        return response.build();
    }

    private static String string(JsonObject json, String key) {
        return json.has(key) && !json.get(key).isJsonNull() ? json.get(key).getAsString() : "";
    }

    private static List<JsonElement> flatten(JsonElement data, List<JsonElement> into) {
        if (data.isJsonArray()) {
            data.getAsJsonArray().forEach(element -> flatten(element, into));
        } else {
            into.add(data);
        }
        return into;
    }

    static ByteString raw(String datatype, List<JsonElement> values) {
        ByteString.Output out = ByteString.newOutput();
        ByteBuffer buffer = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        for (JsonElement value : values) {
            buffer.clear();
            switch (datatype) {
                case "BYTES":
                    byte[] bytes = value.getAsString().getBytes(StandardCharsets.UTF_8);
                    buffer.putInt(bytes.length);
                    out.write(buffer.array(), 0, 4);
                    out.write(bytes, 0, bytes.length);
                    continue;
                case "BOOL":
                    buffer.put((byte) (value.getAsBoolean() ? 1 : 0));
                    break;
                case "INT8":
                case "UINT8":
                    buffer.put(value.getAsByte());
                    break;
                case "INT16":
                    buffer.putShort(value.getAsShort());
                    break;
                case "INT32":
                    buffer.putInt(value.getAsInt());
                    break;
                case "INT64":
                    buffer.putLong(value.getAsLong());
                    break;
                case "FP32":
                    buffer.putFloat(value.getAsFloat());
                    break;
                case "FP64":
                    buffer.putDouble(value.getAsDouble());
                    break;
                default:
                    throw new IllegalArgumentException("output datatype " + datatype + " is not supported");
            }
            out.write(buffer.array(), 0, buffer.position());
        }
        return out.toByteString();
    }
}
