"""Instance state: store layers and their reference counts, checkpoints and rollback, snapshots,
fork, and base images. Layers live on the node that captured them (node/layers/); this package
keeps what references each one in PostgreSQL and deletes a layer once nothing does."""
