module hookline.dev/node-helper

go 1.22
