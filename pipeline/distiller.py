"""Knowledge distillation (Hinton et al.): the student learns from the teacher's softened
outputs mixed with the hard labels.

    loss = alpha * CE(labels, student) + (1 - alpha) * temperature**2 * soft_term

soft_term is KL(teacher || student) at `temperature` for `loss_kind="kd"`, or the seed
article's plain soft-label cross-entropy CE(teacher_soft, student_soft) for "soft_ce". The two
differ by the teacher's entropy, a constant for the student, so their gradients agree; the
reported loss values differ. temperature**2 keeps the soft gradients' scale independent of
the temperature.

"seed" is the seed article's section 4.1 objective, L_CE + lambda * L_contrastive: L_CE is the
"soft_ce" total above and lambda is `student.contrastive_weight`. The article's own form of
the contrastive term was not available to this code (its text is not in the repository), so
the form here is the standard InfoNCE one (van den Oord et al. 2018, as in Tian et al.'s
contrastive distillation, 2020), on the one representation both
networks share, their logits: each student vector, L2-normalised, must pick its own image's
teacher vector out of the batch's,

    L_contrastive = mean_i -log softmax_j(<s_i, t_j> / CONTRASTIVE_TEMPERATURE)[j = i]

It pulls the student's answer towards the teacher's answer for the same image and pushes it
away from the teacher's answers for the other images, with no extra trainable weights, so the
exported student is unchanged in shape.
"""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras, tf

CONTRASTIVE_TEMPERATURE = 0.1  # InfoNCE's usual scale for cosine similarities
PLAIN_CROSS_ENTROPY_KINDS = frozenset({"soft_ce", "seed"})


def soft_term(teacher_logits: Any, student_logits: Any, temperature: float, loss_kind: str) -> Any:
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    teacher_probs = tf.exp(teacher_log_probs)
    cross_entropy = -tf.reduce_sum(teacher_probs * student_log_probs, axis=-1)
    if loss_kind in PLAIN_CROSS_ENTROPY_KINDS:
        return tf.reduce_mean(cross_entropy)
    entropy = -tf.reduce_sum(teacher_probs * teacher_log_probs, axis=-1)
    return tf.reduce_mean(cross_entropy - entropy)


def plain_cross_entropy(labels: Any, logits: Any) -> Any:
    """Per-example cross-entropy of integer labels against logits. A plain function: a Keras
    loss object's own reduction is refused inside a distribution strategy's custom step."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def contrastive_term(teacher_logits: Any, student_logits: Any) -> Any:
    """InfoNCE over the batch: image i's student vector against every teacher vector."""
    student_vectors = tf.math.l2_normalize(student_logits, axis=-1)
    teacher_vectors = tf.math.l2_normalize(teacher_logits, axis=-1)
    similarities = tf.matmul(student_vectors, teacher_vectors, transpose_b=True)
    own_image = tf.range(tf.shape(similarities)[0])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=own_image, logits=similarities / CONTRASTIVE_TEMPERATURE))


def distillation_loss(
    labels: Any, teacher_logits: Any, student_logits: Any, *, alpha: float,
    temperature: float, loss_kind: str = "kd", contrastive_weight: float = 0.0,
    hard_loss: Any = None,
) -> tuple[Any, Any, Any]:
    """Returns (total, student_loss on hard labels, distillation term before weighting).
    `hard_loss(labels, logits)` scores the hard labels (default: plain cross-entropy)."""
    student_loss = tf.reduce_mean((hard_loss or plain_cross_entropy)(labels, student_logits))
    soft = soft_term(teacher_logits, student_logits, temperature, loss_kind)
    total = alpha * student_loss + (1.0 - alpha) * temperature**2 * soft
    if loss_kind == "seed":
        total += contrastive_weight * contrastive_term(teacher_logits, student_logits)
    return total, student_loss, soft


class Distiller(keras.Model):
    """Trains `student` against a frozen `teacher`; `call` runs the student."""

    def __init__(self, *, teacher: keras.Model, student: keras.Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.teacher = teacher
        self.student = student
        self.teacher.trainable = False
        self.alpha = 0.1
        self.temperature = 4.0
        self.loss_kind = "kd"
        self.contrastive_weight = 0.0
        self.hard_loss = None
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.total_loss_tracker = keras.metrics.Mean(name="loss")

    def compile(  # type: ignore[override]
        self, *, optimizer: Any, metrics: Any = None, alpha: float = 0.1,
        temperature: float = 4.0, loss_kind: str = "kd", contrastive_weight: float = 0.0,
        hard_loss: Any = None, **kwargs: Any,
    ) -> None:
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.loss_kind = loss_kind
        self.contrastive_weight = float(contrastive_weight)
        self.hard_loss = hard_loss

    @property
    def metrics(self) -> list[Any]:
        trackers = [self.total_loss_tracker, self.student_loss_tracker]
        return trackers + [self.distillation_loss_tracker] + super().metrics

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.student(inputs, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        inputs, targets = data
        if isinstance(targets, tuple):  # the teacher's logits, computed once on clean images
            labels, teacher_logits = targets
        else:  # the teacher sees the same augmented batch as the student
            labels, teacher_logits = targets, self.teacher(inputs, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student(inputs, training=True)
            total, student_loss, soft = distillation_loss(
                labels, teacher_logits, student_logits, alpha=self.alpha,
                temperature=self.temperature, loss_kind=self.loss_kind,
                contrastive_weight=self.contrastive_weight, hard_loss=self.hard_loss,
            )
            total += tf.add_n(self.student.losses) if self.student.losses else 0.0
            # Replicas' gradients are summed when applied: average them instead.
            scaled_total = total / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled_total, variables), variables))
        return self._update_metrics(labels, student_logits, total, student_loss, soft)

    def test_step(self, data: Any) -> dict[str, Any]:
        inputs, labels = data
        teacher_logits = self.teacher(inputs, training=False)
        student_logits = self.student(inputs, training=False)
        total, student_loss, soft = distillation_loss(
            labels, teacher_logits, student_logits, alpha=self.alpha,
            temperature=self.temperature, loss_kind=self.loss_kind,
            contrastive_weight=self.contrastive_weight, hard_loss=self.hard_loss,
        )
        return self._update_metrics(labels, student_logits, total, student_loss, soft)

    def _update_metrics(
        self, labels: Any, student_logits: Any, total: Any, student_loss: Any, soft: Any
    ) -> dict[str, Any]:
        self.total_loss_tracker.update_state(total)
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(soft)
        self.compiled_metrics.update_state(labels, student_logits)
        return {metric.name: metric.result() for metric in self.metrics}
