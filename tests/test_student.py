import pytest
import torch
from transformers import AutoModelForSequenceClassification

from retort.data.tasks import get_task
from retort.errors import ConfigError
from retort.models.hf import load_classifier, load_tokenizer, save_model
from retort.models.init import uniform_layer_map
from retort.models.student import StudentShape, build_student


def test_shape_parsing_and_derivation():
    assert StudentShape.parse("3x384") == StudentShape(3, 384)
    with pytest.raises(ConfigError, match="LAYERSxHIDDEN"):
        StudentShape.parse("three")

    class C:
        model_type, num_hidden_layers = "bert", 6
        hidden_size, num_attention_heads, intermediate_size = 384, 12, 1536

    assert StudentShape(3, 384).resolve(C) == StudentShape(3, 384, 12, 1536)
    assert StudentShape(4, 312).resolve(C) == StudentShape(4, 312, 4, 1248)
    assert StudentShape(4, 312, heads=12).resolve(C).heads == 12
    with pytest.raises(ConfigError, match="not divisible"):
        StudentShape(2, 100, heads=3).resolve(C)


def test_uniform_layer_map():
    assert uniform_layer_map(3, 6) == [1, 3, 5]
    assert uniform_layer_map(2, 6) == [2, 5]
    assert uniform_layer_map(6, 6) == list(range(6))
    with pytest.raises(ConfigError):
        uniform_layer_map(8, 6)


def test_student_copies_mapped_teacher_layers(tiny_model):
    teacher = load_classifier(str(tiny_model), get_task("RTE"))
    student = build_student(teacher, StudentShape(2, 32))
    assert student.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    for m, tl in enumerate(uniform_layer_map(2, 4)):
        key = "bert.encoder.layer.{}.attention.self.query.weight"
        assert torch.equal(s[key.format(m)], t[key.format(tl)])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"])


def test_narrow_student_is_random_and_saves_as_hf(tiny_model, tmp_path):
    teacher = load_classifier(str(tiny_model), get_task("STS-B"))
    student = build_student(teacher, StudentShape(2, 16))
    assert student.config.hidden_size == 16 and student.config.num_labels == 1
    save_model(student, load_tokenizer(str(tiny_model)), tmp_path / "s")
    assert (tmp_path / "s" / "model.safetensors").exists()
    assert not list((tmp_path / "s").glob("*.bin"))
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s")
    x = torch.tensor([[2, 7, 8, 3]])
    student.eval()
    assert torch.allclose(again(input_ids=x).logits, student(input_ids=x).logits)


def test_student_folder_of_another_task_gets_a_new_head(tiny_model, tmp_path):
    """A general-stage student keeps its (regression) teacher's head; a classification task replaces only
    that head and keeps every encoder weight."""
    regression = load_classifier(str(tiny_model), get_task("STS-B"))
    saved = build_student(regression, StudentShape(2, 32))
    save_model(saved, load_tokenizer(str(tiny_model)), tmp_path / "general")
    classifier = load_classifier(str(tiny_model), get_task("MRPC"))
    student = build_student(classifier, StudentShape(2, 32), init=str(tmp_path / "general"))
    assert student.config.num_labels == 2 and student.classifier.weight.shape[0] == 2
    assert student.config.retort_task == "MRPC" and student.config.id2label == classifier.config.id2label
    s, g = student.state_dict(), saved.state_dict()
    assert all(torch.equal(s[k], g[k]) for k in g if not k.startswith("classifier."))
