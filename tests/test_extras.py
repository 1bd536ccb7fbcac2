"""genrt.extras: install hints that work from a wheel and from a checkout (no genrt[...] an index lacks)."""
from genrt.extras import extra_requirements, install_hint


def test_hints_name_the_packages_and_the_checkout_form():
    hint = install_hint("forms")
    assert hint.startswith('pip install "pypinyin') and 'pip install ".[forms]"' in hint
    assert "genrt[" not in hint
    assert extra_requirements("forms") == [r for r in extra_requirements("forms") if r.startswith("pypinyin")]


def test_a_replacing_package_removes_the_one_it_replaces():
    assert install_hint("gpu").startswith("pip uninstall -y onnxruntime && pip install \"onnxruntime-gpu")


def test_an_unknown_extra_falls_back_to_the_checkout_form():
    assert install_hint("nothing-such") == 'pip install ".[nothing-such]" from a genrt checkout'
