"""pacerctl: Pacer's command-line front door, a client of `pacer.control.v1.ControlService`."""
