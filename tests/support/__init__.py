"""Helpers shared by the stage test folders: loopback servers, project builders, harnesses."""
