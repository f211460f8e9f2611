import java.nio.file.Files;
import java.nio.file.Path;
import jdk.internal.org.objectweb.asm.ClassReader;
import jdk.internal.org.objectweb.asm.ClassVisitor;
import jdk.internal.org.objectweb.asm.ClassWriter;
import jdk.internal.org.objectweb.asm.Label;
import jdk.internal.org.objectweb.asm.MethodVisitor;
import jdk.internal.org.objectweb.asm.Opcodes;
import jdk.internal.org.objectweb.asm.Type;

/**
 * Rewrites six classes of TorchServe 0.12's frontend (deploy/frontend_patch.py runs it at install
 * time with the JDK's own copy of ASM, so nothing is downloaded). Each patched method is renamed
 * `<name>Unpatched` and a new method of the old name wraps it; nothing else in the class changes.
 *
 *   org/pytorch/serve/wlm/Model.pollBatch(String, long, Map):
 *       try { pollBatchUnpatched(threadId, waitTime, jobsRepo); }
 *       catch (InterruptedException e) { InterruptedBatch.requeue(this, jobsRepo); throw e; }
 *
 *   org/pytorch/serve/util/NettyUtils.sendHttpResponse(ChannelHandlerContext, HttpResponse, boolean),
 *   the one place every HTTP answer leaves through:
 *       RetryAfter.onResponse(resp); sendHttpResponseUnpatched(ctx, resp, keepAlive);
 *
 *   The Open Inference Protocol (OpenInference.java says what each fixes):
 *   org/pytorch/serve/ModelServer.startGRPCServer(ConnectorType), replaced:
 *       return OpenInference.startGrpcServer(this, connectorType);
 *   and, guarded (the helper answers, or returns false and TorchServe's own method runs):
 *   OpenInferenceProtocolImpl.modelInfer, .serverReady, .modelMetadata;
 *   OpenInferenceProtocolRequestHandler.handleRequest; GRPCJob.response:
 *       if (OpenInference.<method>(this, args...)) return; <method>Unpatched(args...);
 *
 *     java --add-exports java.base/jdk.internal.org.objectweb.asm=ALL-UNNAMED \
 *         PatchFrontend.java CLASS_NAME ORIGINAL.class PATCHED.class
 */
public final class PatchFrontend {

    static final String MODEL = "org/pytorch/serve/wlm/Model";
    static final String NETTY_UTILS = "org/pytorch/serve/util/NettyUtils";
    static final String POLL_BATCH = "(Ljava/lang/String;JLjava/util/Map;)V";
    static final String POLL_BATCH_SIGNATURE =
            "(Ljava/lang/String;JLjava/util/Map<Ljava/lang/String;Lorg/pytorch/serve/job/Job;>;)V";
    static final String SEND_HTTP_RESPONSE =
            "(Lio/netty/channel/ChannelHandlerContext;Lio/netty/handler/codec/http/HttpResponse;Z)V";
    static final String INTERRUPTED = "java/lang/InterruptedException";
    static final String HELPERS = "torchservemodels/frontend/";
    static final String OPEN_INFERENCE = HELPERS + "OpenInference";
    static final String OIP_GRPC = "org/pytorch/serve/grpcimpl/OpenInferenceProtocolImpl";
    static final String OIP_MESSAGES = "Lorg/pytorch/serve/grpc/openinference/OpenInferenceGrpc$";
    static final String OBSERVER = "Lio/grpc/stub/StreamObserver;";

    public static void main(String[] args) throws Exception {
        byte[] patched = Files.readAllBytes(Path.of(args[1]));
        switch (args[0]) {
            case MODEL:
                patched = wrap(patched, MODEL, "pollBatch", POLL_BATCH, PatchFrontend::requeueOnInterrupt);
                break;
            case NETTY_UTILS:
                patched = wrap(patched, NETTY_UTILS, "sendHttpResponse", SEND_HTTP_RESPONSE,
                               PatchFrontend::retryAfterFirst);
                break;
            case "org/pytorch/serve/ModelServer":
                String startGrpc = "(Lorg/pytorch/serve/util/ConnectorType;)Lio/grpc/Server;";
                patched = wrap(patched, args[0], "startGRPCServer", startGrpc,
                               replacedBy(args[0], startGrpc, "startGrpcServer"));
                break;
            case OIP_GRPC:
                for (String[] method : new String[][] {
                        {"modelInfer", "(" + OIP_MESSAGES + "ModelInferRequest;" + OBSERVER + ")V"},
                        {"serverReady", "(" + OIP_MESSAGES + "ServerReadyRequest;" + OBSERVER + ")V"},
                        {"modelMetadata", "(" + OIP_MESSAGES + "ModelMetadataRequest;" + OBSERVER + ")V"}}) {
                    patched = wrap(patched, OIP_GRPC, method[0], method[1], guardedBy(OIP_GRPC, method[1], method[0]));
                }
                break;
            case "org/pytorch/serve/http/api/rest/OpenInferenceProtocolRequestHandler":
                String handleRequest = "(Lio/netty/channel/ChannelHandlerContext;Lio/netty/handler/codec/http/"
                        + "FullHttpRequest;Lio/netty/handler/codec/http/QueryStringDecoder;[Ljava/lang/String;)V";
                patched = wrap(patched, args[0], "handleRequest", handleRequest,
                               guardedBy(args[0], handleRequest, "handleRest"));
                break;
            case "org/pytorch/serve/job/GRPCJob":
                String response = "([BLjava/lang/CharSequence;ILjava/lang/String;Ljava/util/Map;)V";
                patched = wrap(patched, args[0], "response", response,
                               guardedBy(args[0], response, "refusedPrediction"));
                break;
            default:
                throw new IllegalArgumentException("no patch for " + args[0]);
        }
        Files.write(Path.of(args[2]), patched);
    }

    interface Body {
        void write(MethodVisitor method, String unpatched);
    }

    /** The class with `name` renamed `name + "Unpatched"` and a new `name` written by `body`. */
    static byte[] wrap(byte[] original, String owner, String name, String descriptor, Body body) {
        ClassReader reader = new ClassReader(original);
        if (!owner.equals(reader.getClassName())) {
            throw new IllegalArgumentException("expected " + owner + ", got " + reader.getClassName());
        }
        String unpatched = name + "Unpatched";
        // Untouched methods keep their own stack map frames; the new method brings its own.
        ClassWriter writer = new ClassWriter(reader, 0);
        int[] renamed = {0};
        int[] access = {0};
        String[][] exceptions = {null};
        String[] signature = {null};
        reader.accept(new ClassVisitor(Opcodes.ASM8, writer) {
            @Override
            public MethodVisitor visitMethod(
                    int methodAccess, String methodName, String methodDescriptor, String methodSignature,
                    String[] methodExceptions) {
                if (unpatched.equals(methodName)) {
                    throw new IllegalStateException(owner + " is already patched");
                }
                if (name.equals(methodName) && descriptor.equals(methodDescriptor)) {
                    renamed[0]++;
                    access[0] = methodAccess;
                    exceptions[0] = methodExceptions;
                    signature[0] = methodSignature;
                    methodName = unpatched;
                }
                return super.visitMethod(methodAccess, methodName, methodDescriptor, methodSignature,
                                         methodExceptions);
            }

            @Override
            public void visitEnd() {
                if (renamed[0] != 1) {
                    throw new IllegalStateException(owner + "." + name + descriptor + " not found: another TorchServe?");
                }
                MethodVisitor method = super.visitMethod(access[0], name, descriptor, signature[0], exceptions[0]);
                method.visitCode();
                body.write(method, unpatched);
                method.visitEnd();
                super.visitEnd();
            }
        }, 0);
        return writer.toByteArray();
    }

    /** Model.pollBatch. Locals: 0 this, 1 threadId, 2-3 waitTime (a long), 4 jobsRepo, 5 the exception. */
    static void requeueOnInterrupt(MethodVisitor method, String unpatched) {
        Label start = new Label(), end = new Label(), interrupted = new Label();
        method.visitTryCatchBlock(start, end, interrupted, INTERRUPTED);
        method.visitLabel(start);
        method.visitVarInsn(Opcodes.ALOAD, 0);
        method.visitVarInsn(Opcodes.ALOAD, 1);
        method.visitVarInsn(Opcodes.LLOAD, 2);
        method.visitVarInsn(Opcodes.ALOAD, 4);
        method.visitMethodInsn(Opcodes.INVOKEVIRTUAL, MODEL, unpatched, POLL_BATCH, false);
        method.visitLabel(end);
        method.visitInsn(Opcodes.RETURN);
        method.visitLabel(interrupted);
        method.visitFrame(Opcodes.F_SAME1, 0, null, 1, new Object[] {INTERRUPTED});
        method.visitVarInsn(Opcodes.ASTORE, 5);
        method.visitVarInsn(Opcodes.ALOAD, 0);
        method.visitVarInsn(Opcodes.ALOAD, 4);
        method.visitMethodInsn(Opcodes.INVOKESTATIC, HELPERS + "InterruptedBatch", "requeue",
                               "(L" + MODEL + ";Ljava/util/Map;)V", false);
        method.visitVarInsn(Opcodes.ALOAD, 5);
        method.visitInsn(Opcodes.ATHROW);
        method.visitMaxs(5, 6);
    }

    /** NettyUtils.sendHttpResponse, static. Locals: 0 ctx, 1 resp, 2 keepAlive. */
    static void retryAfterFirst(MethodVisitor method, String unpatched) {
        method.visitVarInsn(Opcodes.ALOAD, 1);
        method.visitMethodInsn(Opcodes.INVOKESTATIC, HELPERS + "RetryAfter", "onResponse",
                               "(Lio/netty/handler/codec/http/HttpResponse;)V", false);
        method.visitVarInsn(Opcodes.ALOAD, 0);
        method.visitVarInsn(Opcodes.ALOAD, 1);
        method.visitVarInsn(Opcodes.ILOAD, 2);
        method.visitMethodInsn(Opcodes.INVOKESTATIC, NETTY_UTILS, unpatched, SEND_HTTP_RESPONSE, false);
        method.visitInsn(Opcodes.RETURN);
        method.visitMaxs(3, 3);
    }

    /** Loads `this` and every argument of an instance method; returns their slots. */
    static int loadThisAndArguments(MethodVisitor method, String descriptor) {
        method.visitVarInsn(Opcodes.ALOAD, 0);
        int slot = 1;
        for (Type argument : Type.getArgumentTypes(descriptor)) {
            method.visitVarInsn(argument.getOpcode(Opcodes.ILOAD), slot);
            slot += argument.getSize();
        }
        return slot;
    }

    /** An instance method whose body is OpenInference.`helper`(this, args...); the original stays unused. */
    static Body replacedBy(String owner, String descriptor, String helper) {
        return (method, unpatched) -> {
            int slots = loadThisAndArguments(method, descriptor);
            method.visitMethodInsn(Opcodes.INVOKESTATIC, OPEN_INFERENCE, helper,
                                   descriptor.replace("(", "(L" + owner + ";"), false);
            method.visitInsn(Type.getReturnType(descriptor).getOpcode(Opcodes.IRETURN));
            method.visitMaxs(slots, slots);
        };
    }

    /** A void instance method: if (OpenInference.`helper`(this, args...)) return; else the original. */
    static Body guardedBy(String owner, String descriptor, String helper) {
        return (method, unpatched) -> {
            Label original = new Label();
            int slots = loadThisAndArguments(method, descriptor);
            method.visitMethodInsn(Opcodes.INVOKESTATIC, OPEN_INFERENCE, helper,
                                   descriptor.replace("(", "(L" + owner + ";").replace(")V", ")Z"), false);
            method.visitJumpInsn(Opcodes.IFEQ, original);
            method.visitInsn(Opcodes.RETURN);
            method.visitLabel(original);
            method.visitFrame(Opcodes.F_SAME, 0, null, 0, null);
            loadThisAndArguments(method, descriptor);
            method.visitMethodInsn(Opcodes.INVOKEVIRTUAL, owner, unpatched, descriptor, false);
            method.visitInsn(Opcodes.RETURN);
            method.visitMaxs(slots, slots);
        };
    }
}
