#!/usr/bin/env python
"""glasszero's front door.

    python train.py                                  # planner agent on CartPole-v1
    python train.py --algo ppo --env CartPole-v1     # an end-to-end baseline, same protocol
    python train.py eval --checkpoint runs/ez_CartPole-v1_s0/model.pt
    python train.py compare | explain | audit | misgen ...   (see --help of each)
"""
import sys

from agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
