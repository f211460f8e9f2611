"""Plain pre/post-processing functions shared by training and serving.

Nothing here imports TorchServe, so training code, tests and another server can use them;
`make archive` ships this package inside every .mar so served and trained inputs cannot drift.
"""
