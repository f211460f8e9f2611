import java.nio.file.Files;
import java.nio.file.Path;
import jdk.internal.org.objectweb.asm.ClassReader;
import jdk.internal.org.objectweb.asm.ClassVisitor;
import jdk.internal.org.objectweb.asm.ClassWriter;
import jdk.internal.org.objectweb.asm.Label;
import jdk.internal.org.objectweb.asm.MethodVisitor;
import jdk.internal.org.objectweb.asm.Opcodes;

/**
 * Rewrites TorchServe 0.12's org/pytorch/serve/wlm/Model.class (deploy/frontend_patch.py runs it at
 * install time; the JDK's own copy of ASM, so nothing is downloaded). The original
 * pollBatch(String, long, Map) is renamed pollBatchUnguarded and a new pollBatch wraps it:
 *
 *     try { pollBatchUnguarded(threadId, waitTime, jobsRepo); }
 *     catch (InterruptedException e) { InterruptedBatch.requeue(this, jobsRepo); throw e; }
 *
 * Nothing else in the class changes.
 *
 *     java --add-exports java.base/jdk.internal.org.objectweb.asm=ALL-UNNAMED \
 *         RequeueInterruptedBatch.java Model.class Model.patched.class
 */
public final class RequeueInterruptedBatch {

    static final String MODEL = "org/pytorch/serve/wlm/Model";
    static final String POLL_BATCH = "pollBatch";
    static final String UNGUARDED = "pollBatchUnguarded";
    static final String DESCRIPTOR = "(Ljava/lang/String;JLjava/util/Map;)V";
    static final String SIGNATURE = "(Ljava/lang/String;JLjava/util/Map<Ljava/lang/String;Lorg/pytorch/serve/job/Job;>;)V";
    static final String INTERRUPTED = "java/lang/InterruptedException";
    static final String HELPER = "torchservemodels/frontend/InterruptedBatch";

    public static void main(String[] args) throws Exception {
        byte[] original = Files.readAllBytes(Path.of(args[0]));
        Files.write(Path.of(args[1]), rewrite(original));
    }

    static byte[] rewrite(byte[] original) {
        ClassReader reader = new ClassReader(original);
        if (!MODEL.equals(reader.getClassName())) {
            throw new IllegalArgumentException("not TorchServe's Model class: " + reader.getClassName());
        }
        // Untouched methods are copied with their own stack map frames; the new method brings its own.
        ClassWriter writer = new ClassWriter(reader, 0);
        int[] renamed = {0};
        reader.accept(new ClassVisitor(Opcodes.ASM8, writer) {
            @Override
            public MethodVisitor visitMethod(
                    int access, String name, String descriptor, String signature, String[] exceptions) {
                if (UNGUARDED.equals(name)) {
                    throw new IllegalStateException("Model.class is already patched");
                }
                if (POLL_BATCH.equals(name) && DESCRIPTOR.equals(descriptor)) {
                    renamed[0]++;
                    return super.visitMethod(access, UNGUARDED, descriptor, signature, exceptions);
                }
                return super.visitMethod(access, name, descriptor, signature, exceptions);
            }

            @Override
            public void visitEnd() {
                if (renamed[0] != 1) {
                    throw new IllegalStateException("Model.pollBatch" + DESCRIPTOR + " not found: another TorchServe?");
                }
                writeGuard(super.visitMethod(Opcodes.ACC_PUBLIC, POLL_BATCH, DESCRIPTOR, SIGNATURE,
                                             new String[] {INTERRUPTED}));
                super.visitEnd();
            }
        }, 0);
        return writer.toByteArray();
    }

    /** Locals: 0 this, 1 threadId, 2-3 waitTime (a long), 4 jobsRepo, 5 the exception. */
    static void writeGuard(MethodVisitor method) {
        Label start = new Label(), end = new Label(), interrupted = new Label();
        method.visitCode();
        method.visitTryCatchBlock(start, end, interrupted, INTERRUPTED);
        method.visitLabel(start);
        method.visitVarInsn(Opcodes.ALOAD, 0);
        method.visitVarInsn(Opcodes.ALOAD, 1);
        method.visitVarInsn(Opcodes.LLOAD, 2);
        method.visitVarInsn(Opcodes.ALOAD, 4);
        method.visitMethodInsn(Opcodes.INVOKEVIRTUAL, MODEL, UNGUARDED, DESCRIPTOR, false);
        method.visitLabel(end);
        method.visitInsn(Opcodes.RETURN);
        method.visitLabel(interrupted);
        method.visitFrame(Opcodes.F_SAME1, 0, null, 1, new Object[] {INTERRUPTED});
        method.visitVarInsn(Opcodes.ASTORE, 5);
        method.visitVarInsn(Opcodes.ALOAD, 0);
        method.visitVarInsn(Opcodes.ALOAD, 4);
        method.visitMethodInsn(Opcodes.INVOKESTATIC, HELPER, "requeue", "(L" + MODEL + ";Ljava/util/Map;)V", false);
        method.visitVarInsn(Opcodes.ALOAD, 5);
        method.visitInsn(Opcodes.ATHROW);
        method.visitMaxs(5, 6);
        method.visitEnd();
    }
}
