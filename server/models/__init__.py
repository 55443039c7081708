"""The model repository: strict manifests, publishing, labels, and the server's
registry that loads labelled versions and swaps them in while serving.

See docs/model-repository.md for the layout and the manifest format.
"""
