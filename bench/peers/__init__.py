"""Reference servers measured next to hubbub (the ceilings and the peers)."""
