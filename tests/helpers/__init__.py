"""Builders shared by the tests (tiny plans, preprocessed datasets and model folders made in code).

``tests/`` is on ``sys.path`` (pyproject's ``[tool.pytest.ini_options] pythonpath``), so a test
imports them as ``from helpers.plans import tiny_plans``.
"""
