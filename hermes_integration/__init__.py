"""Hermes integration (service registration, heartbeat, unregistration) for Rhetor.

Filled by the Tekton-integration issue; Rhetor runs without Hermes until then. Must never import FastAPI.
"""
