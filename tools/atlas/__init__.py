"""PEFT Atlas catalogue engine: load and validate the catalogue, then generate the README and exports."""
