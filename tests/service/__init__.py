"""Tests of xmc_service."""
