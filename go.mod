module github.com/iothub-emulator/iothub-emulator

go 1.26
