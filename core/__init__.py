"""The shared kernel every layer stands on: the error tree, the model-call contract, JSONL reading,
the hub probe and the names that several layers record.

    core  <-  classifiers  <-  strategies  <-  policies  <-  router

Nothing here imports from the packages above it.
"""
