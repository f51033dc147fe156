"""Search runs: candidate student architectures ranked for a teacher without training them, the winner distilled
(DisWOT, issue 15). ``space`` holds search spaces as data, ``proxies`` the training-free scores, ``scoring`` their
averages over batches and seeds, ``evolution`` regularised evolution, ``run`` the run itself (``zoo find-student``).
"""
