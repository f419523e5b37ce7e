"""Recording conditions shared by the room benchmark (bench/) and training augmentation (training/).

Gain, measured-SNR noise (pink, babble, household), simulated room reverberation and the telephone
path, each a pure function of its parameters and a seed, so the benchmark and the training data draw
the same kinds of conditions with different seeds, rooms and clips.
"""
