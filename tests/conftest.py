"""Test-wide settings: one torch thread per test process, so parallel workers do not fight over
the two cores of a CI machine (measured: a digits MLP trained in 2.4 s single-threaded, 50 s with
two threads while another process ran)."""

import torch

torch.set_num_threads(1)
