"""The console scripts: `entry` starts each (avvp, avvp-groundtruth, avvp-pretrain, avvp-finetune) and `app` is
the `avvp` command line. They live outside `avvp/` because they import the stages; nothing is imported here."""
