"""The pipeline's orchestrators: each runs stages in order and resumes where it stopped.

* :mod:`~segforge.workflows.plan_and_preprocess`: verify -> fingerprint -> plan -> preprocess;
* :mod:`~segforge.workflows.train`: the training steps of a configuration, then fold validation;
* :mod:`~segforge.workflows.validation`: a trained fold's validation cases predicted and scored.

They sit above every stage they run (and below the command line), so no stage imports another
stage's orchestrator.
"""
