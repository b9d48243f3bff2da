"""Pacer's scheduler: claims due runs from the control plane a short horizon ahead, holds them in a timer heap and
releases each to a connected executor at its due time, never beyond the credits the executor granted."""
