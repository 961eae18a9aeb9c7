"""Devices and hosts, below training, sampling and evaluation: the mesh and where arrays live on it
(`sharding`), and starting several processes and splitting work between them (`hosts`)."""
