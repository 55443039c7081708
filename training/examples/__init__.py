"""Example deal files built by hand for trying the training package on unfamiliar columns."""
