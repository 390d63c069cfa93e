"""Reparameterization PEFT: learn the weight update in a compact form (low-rank, Kronecker, tensor train)."""
