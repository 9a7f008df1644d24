"""avvp.commands, the console scripts: `entry` starts each (avvp, avvp-groundtruth, avvp-pretrain, avvp-finetune)
and `app` is the `avvp` command line. The folder is avvp_cli/, outside avvp/, because it imports the stages (the
core under avvp/ imports none); it is installed as avvp.commands. Nothing is imported here."""
