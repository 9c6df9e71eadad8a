import numpy as np
import pytest

from devices.tf_env import keras, tf
from pipeline.distiller import (
    CONTRASTIVE_TEMPERATURE,
    Distiller,
    contrastive_term,
    distillation_loss,
)
from pipeline.training import hard_label_loss


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


TEACHER = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
STUDENT = np.array([[1.0, 1.0, 0.0], [-0.5, 0.3, 1.5]])
LABELS = np.array([0, 2])


def _hand_computed(alpha: float, temperature: float) -> tuple[float, float, float]:
    hard = -np.mean(np.log(_softmax(STUDENT)[np.arange(2), LABELS]))
    teacher_soft = _softmax(TEACHER / temperature)
    student_soft = _softmax(STUDENT / temperature)
    kl = np.mean(np.sum(teacher_soft * (np.log(teacher_soft) - np.log(student_soft)), axis=-1))
    cross_entropy = np.mean(-np.sum(teacher_soft * np.log(student_soft), axis=-1))
    return hard, kl, cross_entropy


@pytest.mark.parametrize(("alpha", "temperature"), [(0.1, 4.0), (0.5, 1.0), (0.9, 10.0)])
def test_kd_loss_matches_the_formula(alpha: float, temperature: float) -> None:
    hard, kl, _ = _hand_computed(alpha, temperature)
    total, student_loss, soft = distillation_loss(
        tf.constant(LABELS), tf.constant(TEACHER), tf.constant(STUDENT),
        alpha=alpha, temperature=temperature,
    )
    assert float(student_loss) == pytest.approx(hard, rel=1e-6)
    assert float(soft) == pytest.approx(kl, rel=1e-6)
    expected = alpha * hard + (1 - alpha) * temperature**2 * kl
    assert float(total) == pytest.approx(expected, rel=1e-6)


def test_soft_ce_uses_the_plain_soft_label_cross_entropy() -> None:
    hard, kl, cross_entropy = _hand_computed(0.2, 3.0)
    total, _, soft = distillation_loss(
        tf.constant(LABELS), tf.constant(TEACHER), tf.constant(STUDENT),
        alpha=0.2, temperature=3.0, loss_kind="soft_ce",
    )
    assert float(soft) == pytest.approx(cross_entropy, rel=1e-6)
    assert cross_entropy > kl  # they differ by the teacher's entropy
    assert float(total) == pytest.approx(0.2 * hard + 0.8 * 9.0 * cross_entropy, rel=1e-6)


def _info_nce(teacher: np.ndarray, student: np.ndarray, scale: float) -> float:
    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=-1, keepdims=True)

    similarities = unit(student) @ unit(teacher).T / scale
    return float(-np.mean(np.log(np.diag(_softmax(similarities)))))


def test_seed_loss_adds_lambda_times_the_contrastive_term() -> None:
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(8, 10)), rng.normal(size=(8, 10))
    labels = rng.integers(0, 10, 8)
    total, _, soft = distillation_loss(
        tf.constant(labels), tf.constant(teacher), tf.constant(student),
        alpha=0.0, temperature=1.0, loss_kind="seed", contrastive_weight=0.7,
    )
    cross_entropy = np.mean(-np.sum(_softmax(teacher) * np.log(_softmax(student)), axis=-1))
    contrastive = _info_nce(teacher, student, CONTRASTIVE_TEMPERATURE)
    assert contrastive > 1.0  # unrelated random vectors: far from aligned
    assert float(soft) == pytest.approx(cross_entropy, rel=1e-6)
    assert float(total) == pytest.approx(cross_entropy + 0.7 * contrastive, rel=1e-5)


def test_contrastive_term_rewards_matching_the_own_images_teacher() -> None:
    """Student vectors equal to their own image's teacher score lower than swapped ones."""
    matched = float(contrastive_term(tf.constant(TEACHER), tf.constant(TEACHER)))
    swapped = float(contrastive_term(tf.constant(TEACHER), tf.constant(TEACHER[::-1])))
    assert matched == pytest.approx(_info_nce(TEACHER, TEACHER, CONTRASTIVE_TEMPERATURE))
    assert matched < 0.01 < swapped


def _tiny(name: str, batch_norm: bool) -> keras.Model:
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, name=f"{name}_conv")(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name=name)


def test_teacher_is_frozen_and_only_the_student_learns() -> None:
    keras.utils.set_random_seed(0)
    teacher, student = _tiny("teacher", True), _tiny("student", False)
    teacher_before = [w.copy() for w in teacher.get_weights()]  # includes BN moving stats
    student_before = [w.copy() for w in student.get_weights()]
    distiller = Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), alpha=0.3, temperature=2.0)
    x = np.random.default_rng(0).random((16, 6, 6, 1), dtype=np.float32)
    y = np.arange(16) % 3
    distiller.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
    assert teacher.trainable is False


def test_keyword_only_constructor() -> None:
    with pytest.raises(TypeError):
        Distiller(_tiny("a", False), _tiny("b", False))  # type: ignore[misc]


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_spreads_the_hard_target(smoothing: float) -> None:
    """Target 1 - s on the label plus s / classes on every class, the usual definition."""
    targets = np.full((2, 3), smoothing / 3)
    targets[np.arange(2), LABELS] += 1 - smoothing
    expected = np.mean(-np.sum(targets * np.log(_softmax(STUDENT)), axis=-1))
    loss = hard_label_loss(smoothing)(tf.constant(LABELS), tf.constant(STUDENT))
    assert float(tf.reduce_mean(loss)) == pytest.approx(expected, rel=1e-6)
    total, student_loss, _ = distillation_loss(
        tf.constant(LABELS), tf.constant(TEACHER), tf.constant(STUDENT), alpha=1.0,
        temperature=2.0, hard_loss=hard_label_loss(smoothing))
    assert float(student_loss) == pytest.approx(expected, rel=1e-6)
    assert float(total) == pytest.approx(expected, rel=1e-6)


class _CountingTeacher(keras.Model):
    """A real tiny teacher that counts its forward passes (inside the compiled step too)."""

    def __init__(self) -> None:
        super().__init__()
        self.network = _tiny("counted", False)
        self.calls = tf.Variable(0, trainable=False)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        self.calls.assign_add(1)
        return self.network(inputs, training=training)


@pytest.mark.parametrize(("view", "teacher_calls"), [("augmented", 2 * 3), ("clean", 1)])
def test_teacher_view_decides_when_the_teacher_runs(view: str, teacher_calls: int) -> None:
    """augmented: one teacher pass per training step (2 steps x 3 epochs); clean: one pass
    over the unaugmented images before training, none in the steps."""
    from pipeline.config import StudentConfig
    from pipeline.data import Dataset
    from pipeline.training import train_distilled

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((16, 6, 6, 1), dtype=np.float32)
    y = np.arange(16) % 3
    data = Dataset("tiny", x, y, x[:0], y[:0], x[:4], y[:4], ("a", "b", "c"))
    teacher, student = _CountingTeacher(), _tiny("student", False)
    settings = StudentConfig(epochs=3, batch_size=8, augment=True, early_stopping_patience=0,
                             teacher_view=view)
    before = [w.copy() for w in student.get_weights()]
    history = train_distilled(student, teacher, data, settings)
    assert int(teacher.calls.numpy()) == teacher_calls
    assert history.epochs_run == 3
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))


@pytest.mark.slow
def test_steps_per_execution_changes_no_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many steps per TensorFlow call are the same steps in the same order: the plain and
    the distilled loop end with the same weights, bit for bit, as one step per call."""
    import pipeline.training as training
    from pipeline.config import DataConfig, StudentConfig, TeacherConfig
    from pipeline.data import load_dataset
    from pipeline.stages.train import build_for

    data = load_dataset(DataConfig(name="mnist5k"))
    teacher_settings = TeacherConfig(epochs=2, batch_size=32, augment=True,
                                     early_stopping_patience=0, width=0.5, batch_norm=True)
    student_settings = StudentConfig(epochs=2, batch_size=32, augment=True,
                                     early_stopping_patience=0, width=0.5, batch_norm=True)

    def trained(steps: int) -> list[np.ndarray]:
        monkeypatch.setattr(training, "STEPS_PER_EXECUTION", steps)
        teacher = build_for(teacher_settings, data, seed=0)
        training.train_classifier(teacher, data, teacher_settings, seed=0)
        student = build_for(student_settings, data, seed=1)
        training.train_distilled(student, teacher, data, student_settings, seed=1)
        return teacher.get_weights() + student.get_weights()

    one, many = trained(1), trained(16)
    assert len(one) == len(many)
    assert all(np.array_equal(a, b) for a, b in zip(one, many))
