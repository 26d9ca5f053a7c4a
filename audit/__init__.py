"""The operator audit log: who did what to which row, before and after, and when.

At the bottom of the import graph (it imports only oneflow.lib), so that every
app's admin can record its staff actions here.
"""
