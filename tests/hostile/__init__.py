"""Hostile members (issue 17): one named test per item of the review, ``test_item_NN_<what it holds>``.

- test_image_prompts.py      1 SSRF, 2 downloads that exhaust a worker, 3 kept image inputs, 15 internal details
- test_prompt_limits.py      2 image URL cap, 5 weighted parts and prompt length, 7 banned phrases, 12 clear refusals
- test_results_delivery.py   4 a failing event, 9 trimmed results, 10 retention, 19 redelivered running jobs
- test_discord_members.py    6 mentions, 8 U1-U4 admission, 16 ✉️ cooldown, 17 forged buttons, 18 DMs, 20 /admin show
- test_web_and_ops.py        11 DNS rebinding, 13 health and ops servers, 14 secrets and file modes (and 15's /api/info)
"""
