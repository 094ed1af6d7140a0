"""The promoter: gates a finished training job and registers it as a model package.

Deployed as its own code asset (this folder is the package ``promoter``), so modules here import
each other relatively.
"""
