"""Neural networks: plain nn.Modules with no physics inside (filled by later issues)."""
